from django.urls import path
from rest_framework.routers import SimpleRouter

from projects.api import language_models, views

ORG = r"orgs/(?P<org_slug>[-a-zA-Z0-9_]+)"

router = SimpleRouter()
router.register(r"orgs", views.OrganizationViewSet, basename="api-org")
router.register(rf"{ORG}/projects", views.ProjectViewSet, basename="api-project")
router.register(rf"{ORG}/members", views.MemberViewSet, basename="api-member")
router.register(rf"{ORG}/invitations", views.InvitationViewSet, basename="api-invitation")
router.register(rf"{ORG}/tokens", views.ApiTokenViewSet, basename="api-token")
router.register(rf"{ORG}/jobs", views.JobViewSet, basename="api-job")
router.register(rf"{ORG}/uploads", views.UploadViewSet, basename="api-upload")
router.register(rf"{ORG}/models", language_models.LanguageModelViewSet, basename="api-model")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    path("invitations/accept/", views.AcceptInvitationView.as_view(), name="api-invitation-accept"),
    *router.urls,
]

# Datasets (projects/api/datasets.py): a router of their own, appended.
from projects.api import datasets as dataset_api  # noqa: E402

dataset_router = SimpleRouter()
dataset_router.register(rf"{ORG}/datasets", dataset_api.DatasetViewSet, basename="api-dataset")
urlpatterns += dataset_router.urls

# The runtime (runtime/api/urls.py): agents, endpoints, conversations, the inference audit.
from runtime.api.urls import urlpatterns as runtime_urlpatterns  # noqa: E402

urlpatterns += runtime_urlpatterns
