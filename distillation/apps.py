"""Django app configuration of the distillation app: its counts on the dashboard."""

from django.apps import AppConfig


class DistillationConfig(AppConfig):
    name = "distillation"
    verbose_name = "Distillation: recipes, students, builds"

    def ready(self) -> None:
        from distillation.models import Build, Recipe
        from projects.dashboard import Card, add_card

        add_card(Card(Recipe, "student recipe", "student-list", order=20))
        add_card(Card(Build, "student build", "student-list", order=21))
