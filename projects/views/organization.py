"""Organisation settings: name, members and roles, invitations, API tokens, deletion."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from projects import actions
from projects.actions import ActionError
from projects.forms.organization import DeleteOrganizationForm, InvitationForm, OrganizationForm, RoleForm, TokenForm
from projects.models import ApiToken, Invitation, Membership, Role
from projects.views.base import OrgPageView, OrgView


class SettingsView(OrgPageView):
    """Organisation settings: name, members, invitations; danger zone for owners."""

    template_name = "projects/settings.html"
    write_role = Role.ADMIN

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["members"] = self.scoped(Membership).select_related("user")
        context["invitations"] = self.scoped(Invitation).pending()
        context["roles"] = Role.choices
        context.setdefault("invitation_form", InvitationForm())
        context.setdefault("org_form", OrganizationForm(initial={"name": self.org.name, "slug": self.org.slug}))
        context["can_manage"] = self.membership.has_role(Role.ADMIN)
        context["is_owner"] = self.membership.role == Role.OWNER
        return context

    def post(self, request, *args, **kwargs):
        form = OrganizationForm(request.POST)
        if form.is_valid():
            actions.do_rename_organization(self.org, form.cleaned_data["name"])
            messages.success(request, "Organisation renamed.")
        return redirect("org-settings", org_slug=self.org.slug)


class InvitationCreateView(OrgView):
    write_role = Role.ADMIN

    def post(self, request, *args, **kwargs):
        form = InvitationForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose a role (and a valid e-mail address, if you give one).")
            return redirect("org-settings", org_slug=self.org.slug)
        try:
            invitation, key = actions.do_create_invitation(
                self.membership, form.cleaned_data["role"], form.cleaned_data["email"]
            )
        except ActionError as error:
            return self.action_failed(error, reverse("org-settings", kwargs={"org_slug": self.org.slug}))
        link = request.build_absolute_uri(reverse("join", kwargs={"org_slug": self.org.slug, "key": key}))
        messages.success(
            request,
            f"Invitation created for the {invitation.get_role_display().lower()} role. "
            f"Send this link; it works once and is shown only now: {link}",
        )
        return redirect("org-settings", org_slug=self.org.slug)


class InvitationRevokeView(OrgView):
    write_role = Role.ADMIN

    def post(self, request, invitation_id: int):
        invitation = self.get_scoped(Invitation, pk=invitation_id)
        try:
            actions.do_revoke_invitation(invitation)
            messages.success(request, "Invitation revoked.")
        except ActionError as error:
            messages.error(request, error.message)
        return redirect("org-settings", org_slug=self.org.slug)


class MemberView(OrgView):
    """POST: change a member's role, or remove them (admins; anyone may remove themselves)."""

    write_role = Role.VIEWER  # checked per action below: leaving is open to everyone

    def post(self, request, member_id: int, action: str):
        member = self.get_scoped(Membership, pk=member_id)
        settings_url = reverse("org-settings", kwargs={"org_slug": self.org.slug})
        is_self = member.pk == self.membership.pk
        if not (self.membership.has_role(Role.ADMIN) or (action == "remove" and is_self)):
            raise PermissionDenied("Managing members needs the admin role.")
        try:
            if action == "role":
                form = RoleForm(request.POST)
                if not form.is_valid():
                    raise ActionError("Choose a valid role.")
                actions.do_change_role(self.membership, member, form.cleaned_data["role"])
                messages.success(request, f"{member.user} is now {member.get_role_display().lower()}.")
            elif action == "remove":
                actions.do_remove_member(self.membership, member)
                if is_self:
                    messages.success(request, f"You left {self.org}.")
                    return redirect("home")
                messages.success(request, f"{member.user} was removed; their API tokens no longer work.")
            else:
                raise Http404
        except ActionError as error:
            messages.error(request, error.message)
        return redirect(settings_url)


class OrgDeleteView(OrgView):
    write_role = Role.OWNER

    def post(self, request, *args, **kwargs):
        form = DeleteOrganizationForm(request.POST)
        try:
            actions.do_delete_organization(self.org, confirm_slug=form.data.get("confirm", ""))
        except ActionError as error:
            return self.action_failed(error, reverse("org-settings", kwargs={"org_slug": self.org.slug}))
        messages.success(request, f"Organisation {self.org} and everything in it was deleted.")
        return redirect("home")


class TokenListView(OrgPageView):
    """Personal API tokens of the signed-in user in this organisation."""

    template_name = "projects/tokens.html"
    write_role = Role.VIEWER  # everyone may hold tokens; a token never exceeds its owner's role

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["tokens"] = self.scoped(ApiToken).filter(user=self.request.user)
        context.setdefault("form", TokenForm())
        return context

    def post(self, request, *args, **kwargs):
        form = TokenForm(request.POST)
        if form.is_valid():
            try:
                token, secret = actions.do_create_token(self.org, request.user, form.cleaned_data["name"])
            except ActionError as error:
                form.add_error("name", error.message)
            else:
                context = self.get_context_data(new_token=token, new_secret=secret)
                return self.render_to_response(context)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class TokenRevokeView(OrgView):
    write_role = Role.VIEWER

    def post(self, request, token_id: int):
        token = self.get_scoped(ApiToken, pk=token_id, user=request.user)
        actions.do_revoke_token(token)
        messages.success(request, f"Token {token} revoked.")
        return redirect("tokens", org_slug=self.org.slug)
