"""The analysis app's REST API, mounted under /api/v1/ by hartonomous_web/urls.py."""

from rest_framework.routers import SimpleRouter

from analysis.api import captures, coders, features

ORG = r"orgs/(?P<org_slug>[-a-zA-Z0-9_]+)"

router = SimpleRouter()
router.register(rf"{ORG}/captures", captures.CaptureViewSet, basename="api-capture")
router.register(rf"{ORG}/coder-runs", coders.CoderRunViewSet, basename="api-coder-run")
router.register(rf"{ORG}/coders", coders.CoderViewSet, basename="api-coder")
router.register(rf"{ORG}/coder-exports", coders.CoderExportViewSet, basename="api-coder-export")
router.register(rf"{ORG}/features", features.FeatureViewSet, basename="api-feature")

urlpatterns = router.urls
