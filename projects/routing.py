from django.urls import path

from projects.consumers.jobs import JobsConsumer

websocket_urlpatterns = [
    path("ws/o/<slug:org_slug>/jobs/", JobsConsumer.as_asgi()),
]
