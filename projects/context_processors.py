from projects.models import Organization


def tenancy(request):
    """The organisations of the signed-in user, for the switcher in the page header."""
    user = getattr(request, "user", None)
    if not user or not user.is_authenticated:
        return {}
    return {
        # Pages inside an organisation found them while resolving the membership (views_base).
        "my_orgs": getattr(request, "my_orgs", None) or Organization.objects.for_user(user).order_by("name"),
        "current_org": getattr(request, "org", None),
        "current_membership": getattr(request, "membership", None),
    }
