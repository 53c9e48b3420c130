"""The projects app's REST API, mounted under /api/v1/ by hartonomous_web/urls.py (each app mounts its own)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from projects.api import datasets, teachers, views

ORG = r"orgs/(?P<org_slug>[-a-zA-Z0-9_]+)"

router = SimpleRouter()
router.register(r"orgs", views.OrganizationViewSet, basename="api-org")
router.register(rf"{ORG}/projects", views.ProjectViewSet, basename="api-project")
router.register(rf"{ORG}/members", views.MemberViewSet, basename="api-member")
router.register(rf"{ORG}/invitations", views.InvitationViewSet, basename="api-invitation")
router.register(rf"{ORG}/tokens", views.ApiTokenViewSet, basename="api-token")
router.register(rf"{ORG}/jobs", views.JobViewSet, basename="api-job")
router.register(rf"{ORG}/uploads", views.UploadViewSet, basename="api-upload")
router.register(rf"{ORG}/models", teachers.LanguageModelViewSet, basename="api-model")
router.register(rf"{ORG}/datasets", datasets.DatasetViewSet, basename="api-dataset")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("invitations/accept/", views.AcceptInvitationView.as_view(), name="api-invitation-accept"),
    *router.urls,
]
