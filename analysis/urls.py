"""Pages of the analysis app, mounted under /o/<org_slug>/analyses/."""

from django.urls import path

from analysis.views import captures, coders

urlpatterns = [
    path("", captures.AnalysisHomeView.as_view(), name="analysis-list"),
    path("captures/new/", captures.CaptureCreateView.as_view(), name="capture-create"),
    path("captures/<int:capture_id>/", captures.CaptureDetailView.as_view(), name="capture-detail"),
    path("captures/<int:capture_id>/train/", captures.CoderRunCreateView.as_view(), name="coder-run-create"),
    path("runs/<int:run_id>/", coders.CoderRunDetailView.as_view(), name="coder-run-detail"),
]
