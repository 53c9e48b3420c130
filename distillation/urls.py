"""Pages of the distillation app, mounted under /o/<org_slug>/students/."""

from django.urls import path

from distillation.views import builds, importance, recipes

urlpatterns = [
    path("", importance.StudentsHomeView.as_view(), name="student-list"),
    path("importance/new/", importance.ImportanceCreateView.as_view(), name="importance-create"),
    path("importance/<int:analysis_id>/", importance.ImportanceDetailView.as_view(), name="importance-detail"),
    path("recipes/new/", recipes.RecipeCreateView.as_view(), name="recipe-create"),
    path("recipes/compare/", recipes.RecipeCompareView.as_view(), name="recipe-compare"),
    path("recipes/<int:recipe_id>/", recipes.RecipeDetailView.as_view(), name="recipe-detail"),
    path("recipes/<int:recipe_id>/edit/", recipes.RecipeEditView.as_view(), name="recipe-edit"),
    path("recipes/<int:recipe_id>/approve/", recipes.RecipeApproveView.as_view(), name="recipe-approve"),
    path("recipes/<int:recipe_id>/build/", builds.BuildCreateView.as_view(), name="build-create"),
    path("builds/<int:build_id>/", builds.BuildDetailView.as_view(), name="build-detail"),
    path("builds/<int:build_id>/baselines/", builds.BaselinesView.as_view(), name="build-baselines"),
]
