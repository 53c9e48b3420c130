"""Pages of the analysis app, mounted under /o/<org_slug>/analyses/."""

from django.urls import path

from analysis.views import captures, coders, features

urlpatterns = [
    path("", captures.AnalysisHomeView.as_view(), name="analysis-list"),
    path("captures/new/", captures.CaptureCreateView.as_view(), name="capture-create"),
    path("captures/<int:capture_id>/", captures.CaptureDetailView.as_view(), name="capture-detail"),
    path("captures/<int:capture_id>/release/", captures.CaptureReleaseView.as_view(), name="capture-release"),
    path("captures/<int:capture_id>/train/", captures.CoderRunCreateView.as_view(), name="coder-run-create"),
    path("runs/<int:run_id>/", coders.CoderRunDetailView.as_view(), name="coder-run-detail"),
    path("runs/<int:run_id>/export/", coders.ExportCreateView.as_view(), name="coder-export-create"),
    path("exports/<int:export_id>/download/", coders.ExportDownloadView.as_view(), name="coder-export-download"),
    path("coders/<int:coder_id>/features/", features.FeatureListView.as_view(), name="feature-list"),
    path("coders/<int:coder_id>/describe/", features.DescribeFeaturesView.as_view(), name="feature-describe"),
    path("coders/<int:coder_id>/label/", features.LabelFeaturesView.as_view(), name="feature-label"),
    path("coders/<int:coder_id>/features/<int:index>/", features.FeatureDetailView.as_view(), name="feature-detail"),
    path("coders/<int:coder_id>/test/", features.TestBoxView.as_view(), name="feature-test"),
]
