from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from projects.urls import org_urlpatterns
from runtime.api.urls import openai_urlpatterns

urlpatterns = [
    path("", include("projects.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path(
        "o/<slug:org_slug>/",
        include(
            [
                *org_urlpatterns,
                path("analyses/", include("analysis.urls")),
                path("students/", include("distillation.urls")),
                path("agents/", include("runtime.urls")),
            ]
        ),
    ),
    path("api/v1/", include("projects.api.urls")),
    path("api/v1/", include("runtime.api.urls")),
    path("api/v1/", include("analysis.api.urls")),
    path("api/v1/", include("distillation.api.urls")),
    # The OpenAI-compatible API (runtime/api/openai.py): bearer tokens only.
    path("v1/", include(openai_urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("django-admin/", admin.site.urls),
]
