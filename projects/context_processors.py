from functools import lru_cache

from django.core.signals import setting_changed
from django.urls import get_script_prefix, reverse
from django.utils.functional import SimpleLazyObject

from projects.models import Organization

#: The sections of an organisation in the side navigation (URL names, all under /o/<slug>/).
ORG_SECTIONS = (
    "dashboard",
    "project-list",
    "model-list",
    "dataset-list",
    "analysis-list",
    "student-list",
    "agent-list",
    "job-list",
    "org-settings",
)


@lru_cache(maxsize=4096)
def org_urls(prefix: str, slug: str) -> dict[str, str]:
    """An organisation's section URLs, by URL name with ``_`` for ``-`` (for templates).

    Every page's frame needs about fifteen URLs; reversing them cost ~0.5 ms of each request,
    and they change only with the organisation's slug (and the URL configuration).
    """
    return {name.replace("-", "_"): reverse(name, kwargs={"org_slug": slug}) for name in ORG_SECTIONS}


@lru_cache(maxsize=16)
def site_urls(prefix: str) -> dict[str, str]:
    return {name.replace("-", "_"): reverse(name) for name in ("home", "org-create", "password_change", "logout")}


def _forget_urls(setting, **kwargs) -> None:
    if setting in ("ROOT_URLCONF", "FORCE_SCRIPT_NAME"):
        org_urls.cache_clear()
        site_urls.cache_clear()


setting_changed.connect(_forget_urls)


def tenancy(request):
    """The organisations of the signed-in user, for the switcher in the page header, and the
    URLs of the page frame."""
    prefix = get_script_prefix()
    user = getattr(request, "user", None)
    if not user or not user.is_authenticated:
        return {"site_urls": site_urls(prefix)}

    def switcher():
        # Pages inside an organisation found them while resolving the membership (views_base).
        my_orgs = getattr(request, "my_orgs", None) or Organization.objects.for_user(user).order_by("name")
        return [(o, org_urls(prefix, o.slug)["dashboard"]) for o in my_orgs]

    current_org = getattr(request, "org", None)
    return {
        # Built when a template first uses it: htmx fragments render without the header.
        "org_switcher": SimpleLazyObject(switcher),
        "current_org": current_org,
        "current_membership": getattr(request, "membership", None),
        "section_urls": org_urls(prefix, current_org.slug) if current_org else {},
        "site_urls": site_urls(prefix),
    }
