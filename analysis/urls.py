"""Pages of the analysis app, mounted under /o/<org_slug>/analyses/."""

from django.urls import path

from projects.views.sections import SectionView

# Mounted under /o/<org_slug>/analyses/.
urlpatterns = [
    path(
        "",
        SectionView.as_view(
            section="Analyses",
            explanation="Activation captures, transcoders and circuit graphs of your teachers will appear here.",
        ),
        name="analysis-list",
    ),
]
