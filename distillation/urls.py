"""Pages of the distillation app, mounted under /o/<org_slug>/students/."""

from django.urls import path

from projects.views.sections import SectionView

# Mounted under /o/<org_slug>/students/.
urlpatterns = [
    path(
        "",
        SectionView.as_view(section="Students", explanation="Proposed and built student models will appear here."),
        name="student-list",
    ),
]
