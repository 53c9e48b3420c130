"""Routes of the runtime's APIs.

``urlpatterns``: the REST API, mounted under ``/api/v1/`` by ``hartonomous_web/urls.py``.
``openai_urlpatterns``: the OpenAI-compatible API, mounted at ``/v1/`` by ``hartonomous_web/urls.py``.
"""

from django.urls import path
from rest_framework.routers import SimpleRouter

from runtime.api import openai, views

ORG = r"orgs/(?P<org_slug>[-a-zA-Z0-9_]+)"

router = SimpleRouter()
router.register(rf"{ORG}/agents", views.AgentViewSet, basename="api-agent")
router.register(rf"{ORG}/endpoints", views.EndpointViewSet, basename="api-endpoint")
router.register(rf"{ORG}/conversations", views.ConversationViewSet, basename="api-conversation")
router.register(rf"{ORG}/inferences", views.InferenceRecordViewSet, basename="api-inference")

urlpatterns = router.urls

openai_urlpatterns = [
    path("models", openai.list_models, name="openai-models"),
    path("models/<str:model>", openai.retrieve_model, name="openai-model"),
    path("chat/completions", openai.chat_completions, name="openai-chat-completions"),
]
