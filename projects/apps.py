"""Django app configuration of the projects app: job kinds and cached renderings set up at start-up."""

from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Organisations and projects"

    def ready(self) -> None:
        from projects import background, tenant_cache
        from projects.models import Dataset, Job, LanguageModel, Membership, Organization, Project

        # Every app's jobs package registers its job kinds on import.
        background.autodiscover()
        # Writes of these are followed, so cached renderings of them (the dashboard, the
        # project list API) are thrown away when they change (tenant_cache.py).
        tenant_cache.track(Organization, Membership, Project, Job, LanguageModel, Dataset)
