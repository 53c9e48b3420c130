from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    name = "runtime"
    verbose_name = "Runtime: agents, chat, A/B tests"

    def ready(self) -> None:
        from projects import tenant_cache
        from runtime.models import Agent

        tenant_cache.track(Agent)  # shown on the dashboard (projects.views.dashboard.DashboardView)
