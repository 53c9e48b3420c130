"""The distillation app's REST API, mounted under /api/v1/ by hartonomous_web/urls.py."""

from rest_framework.routers import SimpleRouter

from distillation.api import views

ORG = r"orgs/(?P<org_slug>[-a-zA-Z0-9_]+)"

router = SimpleRouter()
router.register(rf"{ORG}/importance", views.ImportanceViewSet, basename="api-importance")
router.register(rf"{ORG}/recipes", views.RecipeViewSet, basename="api-recipe")
router.register(rf"{ORG}/builds", views.BuildViewSet, basename="api-build")
router.register(rf"{ORG}/distill", views.DistillViewSet, basename="api-distill")

urlpatterns = router.urls
