"""Django admin for platform operators (staff), not tenants."""

from django.contrib import admin

from projects.models import ApiToken, Invitation, Job, Membership, Organization, Project


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["organization", "user", "role", "created_at"]
    list_filter = ["role"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "slug", "archived_at"]
    search_fields = ["name", "slug"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["organization", "role", "email", "created_at", "expires_at", "accepted_at", "revoked_at"]
    exclude = ["key_hash"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "user", "prefix", "last_used_at", "revoked_at"]
    exclude = ["token_hash"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "organization", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status", "kind", "queue"]
