from django.urls import path

from runtime.consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/o/<slug:org_slug>/conversations/<int:conversation_id>/", ChatConsumer.as_asgi()),
]
