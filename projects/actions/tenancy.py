"""Organisations, members and roles, invitations and API tokens."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from projects.actions.base import RESERVED_SLUGS, ActionError, clean_slug
from projects.models import (
    ApiToken,
    Invitation,
    Membership,
    Organization,
    Role,
    hash_secret,
)


@transaction.atomic
def do_create_organization(user: User, name: str, slug: str = "") -> Organization:
    """Create an organisation; its creator becomes the owner."""
    name = name.strip()
    if not name:
        raise ActionError("The organisation needs a name.", field="name")
    slug = clean_slug(slug or name)
    if slug in RESERVED_SLUGS:
        raise ActionError(f"“{slug}” is reserved; choose another slug.", field="slug", code="duplicate")
    if Organization.objects.filter(slug=slug).exists():
        raise ActionError(
            f"The address “{slug}” is already taken by another organisation; choose another slug.",
            field="slug",
            code="duplicate",
        )
    try:
        with transaction.atomic():
            org = Organization.objects.create(name=name, slug=slug, created_by=user)
    except IntegrityError:
        raise ActionError(
            f"The address “{slug}” was just taken; choose another slug.", field="slug", code="duplicate"
        ) from None
    Membership.objects.create(organization=org, user=user, role=Role.OWNER)
    return org


@transaction.atomic
def do_rename_organization(org: Organization, name: str) -> Organization:
    name = name.strip()
    if not name:
        raise ActionError("The organisation needs a name.", field="name")
    org.name = name
    org.save(update_fields=["name"])
    return org


def do_delete_organization(org: Organization, *, confirm_slug: str) -> None:
    """Delete an organisation and everything in it (owners only; checked by the caller's role)."""
    if confirm_slug != org.slug:
        raise ActionError(f"Type the organisation's slug “{org.slug}” to confirm.", field="confirm")
    org.delete()


def _check_can_assign(actor: Membership, role: str) -> None:
    if role not in Role.values:
        raise ActionError(f"Unknown role “{role}”; choose one of {', '.join(Role.values)}.", field="role")
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise ActionError("Only an owner can make someone an owner.", field="role", code="forbidden")


def _owners_left(org: Organization, excluding: Membership) -> int:
    return Membership.objects.for_org(org).filter(role=Role.OWNER).exclude(pk=excluding.pk).count()


@transaction.atomic
def do_change_role(actor: Membership, member: Membership, role: str) -> Membership:
    _check_can_assign(actor, role)
    if member.role == Role.OWNER and actor.role != Role.OWNER:
        raise ActionError("Only an owner can change another owner's role.", code="forbidden")
    if member.role == Role.OWNER and role != Role.OWNER and _owners_left(member.organization, member) == 0:
        raise ActionError("An organisation needs at least one owner: make someone else owner first.")
    member.role = role
    member.save(update_fields=["role"])
    return member


@transaction.atomic
def do_remove_member(actor: Membership, member: Membership) -> None:
    """Remove a member (or leave, when actor is member); their API tokens stop working."""
    if member.pk != actor.pk and member.role == Role.OWNER and actor.role != Role.OWNER:
        raise ActionError("Only an owner can remove an owner.", code="forbidden")
    if member.role == Role.OWNER and _owners_left(member.organization, member) == 0:
        raise ActionError("An organisation needs at least one owner: make someone else owner first.")
    ApiToken.objects.for_org(member.organization).filter(user=member.user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    member.delete()


def do_create_invitation(actor: Membership, role: str, email: str = "") -> tuple[Invitation, str]:
    """Create an invitation; returns it and the secret key (shown once, only its hash is kept)."""
    _check_can_assign(actor, role)
    key = Invitation.new_key()
    invitation = Invitation.objects.create(
        organization=actor.organization,
        role=role,
        email=email.strip(),
        key_hash=hash_secret(key),
        created_by=actor.user,
        expires_at=Invitation.default_expiry(),
    )
    return invitation, key


def do_revoke_invitation(invitation: Invitation) -> None:
    if invitation.state != "pending":
        raise ActionError(f"This invitation is already {invitation.state}.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])


def find_invitation(org_slug: str, key: str) -> Invitation:
    """The pending invitation for this link, or an ActionError saying what is wrong with it."""
    invitation = Invitation.objects.select_related("organization").filter(key_hash=hash_secret(key)).first()
    if invitation is None:
        raise ActionError("This invitation link is not valid. Ask for a new one.", code="not_found")
    if invitation.organization.slug != org_slug:
        raise ActionError("This invitation belongs to another organisation than the link says.", code="not_found")
    if invitation.state != "pending":
        reason = {
            "accepted": "has already been used",
            "revoked": "was revoked",
            "expired": "has expired",
        }[invitation.state]
        raise ActionError(f"This invitation {reason}. Ask an admin of {invitation.organization} for a new one.")
    return invitation


@transaction.atomic
def do_accept_invitation(user: User, org_slug: str, key: str) -> Membership:
    invitation = find_invitation(org_slug, key)
    # Lock the row so two people cannot both use the same link.
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.state != "pending":
        raise ActionError("This invitation has already been used.")
    if Membership.objects.for_org(invitation.organization).filter(user=user).exists():
        raise ActionError(f"You are already a member of {invitation.organization}.")
    membership = Membership.objects.create(organization=invitation.organization, user=user, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def do_create_token(org: Organization, user: User, name: str) -> tuple[ApiToken, str]:
    """Create a personal token; returns the row and the token itself (shown once)."""
    name = name.strip()
    if not name:
        raise ActionError("Give the token a name, e.g. the script that will use it.", field="name")
    secret = ApiToken.generate()
    token = ApiToken.objects.create(
        organization=org,
        user=user,
        name=name[:80],
        prefix=secret[: len(ApiToken.PREFIX) + 6],
        token_hash=hash_secret(secret),
    )
    return token, secret


def do_revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
