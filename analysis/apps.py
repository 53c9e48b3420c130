"""Django app configuration of the analysis app."""

from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "analysis"
    verbose_name = "Analysis: captures, transcoders, circuits"
