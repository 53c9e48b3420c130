"""Django app configuration of the analysis app: its counts on the dashboard."""

from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "analysis"
    verbose_name = "Analysis: captures, transcoders, circuits"

    def ready(self) -> None:
        from analysis.models import Capture, CoderRun
        from projects.dashboard import Card, add_card

        add_card(Card(Capture, "activation capture", "analysis-list", order=10))
        add_card(Card(CoderRun, "transcoder training run", "analysis-list", order=11))
