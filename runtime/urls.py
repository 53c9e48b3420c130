from django.urls import path

from projects.views import SectionView

# Mounted under /o/<org_slug>/agents/.
urlpatterns = [
    path("", SectionView.as_view(section="Agents", explanation="Deployed agents you can chat with will appear here."), name="agent-list"),
]
