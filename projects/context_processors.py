from projects.models import Organization


def tenancy(request):
    """The organisations of the signed-in user, for the switcher in the page header."""
    user = getattr(request, "user", None)
    if not user or not user.is_authenticated:
        return {}
    return {
        "my_orgs": Organization.objects.for_user(user).order_by("name"),
        "current_org": getattr(request, "org", None),
        "current_membership": getattr(request, "membership", None),
    }
