from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Organisations and projects"

    def ready(self) -> None:
        from projects import jobs_base

        # Every app's jobs.py registers its job kinds on import.
        jobs_base.autodiscover()
