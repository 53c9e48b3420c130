from django.urls import path

from projects.views import accounts, dashboard, datasets, health, jobs, organization, projects, teachers

# Mounted under /o/<org_slug>/ by hartonomous_web/urls.py.
org_urlpatterns = [
    path("", dashboard.DashboardView.as_view(), name="dashboard"),
    path("projects/", projects.ProjectListView.as_view(), name="project-list"),
    path("projects/<slug:project_slug>/", projects.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<slug:project_slug>/<str:action>/", projects.ProjectActionView.as_view(), name="project-action"),
    path("jobs/", jobs.JobListView.as_view(), name="job-list"),
    path("jobs/<int:job_id>/", jobs.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/<str:action>/", jobs.JobActionView.as_view(), name="job-action"),
    path("settings/", organization.SettingsView.as_view(), name="org-settings"),
    path("settings/invitations/", organization.InvitationCreateView.as_view(), name="invitation-create"),
    path(
        "settings/invitations/<int:invitation_id>/revoke/",
        organization.InvitationRevokeView.as_view(),
        name="invitation-revoke",
    ),
    path("settings/members/<int:member_id>/<str:action>/", organization.MemberView.as_view(), name="member-action"),
    path("settings/delete/", organization.OrgDeleteView.as_view(), name="org-delete"),
    path("settings/tokens/", organization.TokenListView.as_view(), name="tokens"),
    path("settings/tokens/<int:token_id>/revoke/", organization.TokenRevokeView.as_view(), name="token-revoke"),
    path("models/", teachers.ModelListView.as_view(), name="model-list"),
    path("models/<int:model_id>/", teachers.ModelDetailView.as_view(), name="model-detail"),
    path("models/<int:model_id>/delete/", teachers.ModelDeleteView.as_view(), name="model-delete"),
    path("models/<int:model_id>/compare/", teachers.ModelCompareView.as_view(), name="model-compare"),
    path("models/<int:model_id>/convert/", teachers.ModelConvertView.as_view(), name="model-convert"),
    path("datasets/", datasets.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/new/", datasets.DatasetCreateView.as_view(), name="dataset-create"),
    path("datasets/<int:dataset_id>/", datasets.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<int:dataset_id>/<str:action>/", datasets.DatasetActionView.as_view(), name="dataset-action"),
]

urlpatterns = [
    path("", accounts.home, name="home"),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("orgs/new/", accounts.org_create, name="org-create"),
    path("join/<slug:org_slug>/<str:key>/", accounts.join, name="join"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
