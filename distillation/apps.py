"""Django app configuration of the distillation app."""

from django.apps import AppConfig


class DistillationConfig(AppConfig):
    name = "distillation"
    verbose_name = "Distillation: recipes, students, builds"
