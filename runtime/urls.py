from django.urls import path

from runtime import views

# Mounted under /o/<org_slug>/agents/. "new" and "endpoints" are fixed paths, so no agent or
# endpoint may take them as its slug (runtime.actions.RESERVED_SLUGS).
conversation = "conversations/<int:conversation_id>/"
urlpatterns = [
    path("", views.AgentListView.as_view(), name="agent-list"),
    path("new/", views.AgentFormView.as_view(), name="agent-create"),
    path("endpoints/", views.EndpointListView.as_view(), name="endpoint-list"),
    path("endpoints/new/", views.EndpointCreateView.as_view(), name="endpoint-create"),
    path("endpoints/<slug:endpoint_slug>/", views.EndpointDetailView.as_view(), name="endpoint-detail"),
    path(
        f"endpoints/<slug:endpoint_slug>/{conversation}", views.ConversationView.as_view(), name="endpoint-conversation"
    ),
    path(
        f"endpoints/<slug:endpoint_slug>/{conversation}delete/",
        views.ConversationDeleteView.as_view(),
        name="endpoint-conversation-delete",
    ),
    path(
        f"endpoints/<slug:endpoint_slug>/{conversation}messages/<int:message_id>/feedback/",
        views.FeedbackView.as_view(),
        name="endpoint-feedback",
    ),
    path("endpoints/<slug:endpoint_slug>/<str:action>/", views.EndpointActionView.as_view(), name="endpoint-action"),
    path("<slug:agent_slug>/", views.AgentDetailView.as_view(), name="agent-detail"),
    path("<slug:agent_slug>/edit/", views.AgentFormView.as_view(), name="agent-edit"),
    path("<slug:agent_slug>/audit/", views.AuditView.as_view(), name="agent-audit"),
    path(f"<slug:agent_slug>/{conversation}", views.ConversationView.as_view(), name="agent-conversation"),
    path(
        f"<slug:agent_slug>/{conversation}delete/",
        views.ConversationDeleteView.as_view(),
        name="agent-conversation-delete",
    ),
    path(
        f"<slug:agent_slug>/{conversation}messages/<int:message_id>/feedback/",
        views.FeedbackView.as_view(),
        name="agent-feedback",
    ),
    path("<slug:agent_slug>/<str:action>/", views.AgentActionView.as_view(), name="agent-action"),
]
