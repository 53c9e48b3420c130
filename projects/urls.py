from django.urls import path

from projects import views, views_datasets, views_models

# Mounted under /o/<org_slug>/ by hartonomous_web/urls.py.
org_urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("projects/", views.ProjectListView.as_view(), name="project-list"),
    path("projects/<slug:project_slug>/", views.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<slug:project_slug>/<str:action>/", views.ProjectActionView.as_view(), name="project-action"),
    path("jobs/", views.JobListView.as_view(), name="job-list"),
    path("jobs/<int:job_id>/", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/<str:action>/", views.JobActionView.as_view(), name="job-action"),
    path("settings/", views.SettingsView.as_view(), name="org-settings"),
    path("settings/invitations/", views.InvitationCreateView.as_view(), name="invitation-create"),
    path(
        "settings/invitations/<int:invitation_id>/revoke/",
        views.InvitationRevokeView.as_view(),
        name="invitation-revoke",
    ),
    path("settings/members/<int:member_id>/<str:action>/", views.MemberView.as_view(), name="member-action"),
    path("settings/delete/", views.OrgDeleteView.as_view(), name="org-delete"),
    path("settings/tokens/", views.TokenListView.as_view(), name="tokens"),
    path("settings/tokens/<int:token_id>/revoke/", views.TokenRevokeView.as_view(), name="token-revoke"),
    path("models/", views_models.ModelListView.as_view(), name="model-list"),
    path("models/<int:model_id>/", views_models.ModelDetailView.as_view(), name="model-detail"),
    path("models/<int:model_id>/delete/", views_models.ModelDeleteView.as_view(), name="model-delete"),
    path("models/<int:model_id>/compare/", views_models.ModelCompareView.as_view(), name="model-compare"),
    path("models/<int:model_id>/convert/", views_models.ModelConvertView.as_view(), name="model-convert"),
    *views_datasets.org_urlpatterns,
]

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/signup/", views.signup, name="signup"),
    path("orgs/new/", views.org_create, name="org-create"),
    path("join/<slug:org_slug>/<str:key>/", views.join, name="join"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
