"""Invitation links: created by admins, used once, expire, belong to one organisation."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from projects import actions
from projects.models import Invitation, Membership, Role
from tests.conftest import make_user


def test_invitation_link_flow_in_the_browser_pages(actors, client):
    client.force_login(actors.admin)
    response = client.post(
        f"/o/{actors.org.slug}/settings/invitations/", {"role": "viewer", "email": "new@example.org"}, follow=True
    )
    link = [str(m) for m in response.context["messages"]][0].rsplit(" ", 1)[1]
    assert f"/join/{actors.org.slug}/" in link
    invitation = Invitation.objects.get(organization=actors.org)
    assert invitation.key_hash not in link and invitation.role == Role.VIEWER

    newcomer = make_user("nina")
    client.force_login(newcomer)
    path = link.split("testserver", 1)[1]
    page = client.get(path)
    assert page.status_code == 200 and b"Alice Labs" in page.content and b"viewer" in page.content
    response = client.post(path)
    assert response.status_code == 302 and response["Location"] == f"/o/{actors.org.slug}/"
    assert Membership.objects.get(organization=actors.org, user=newcomer).role == Role.VIEWER
    # Used once: the same link now explains itself and changes nothing.
    other = make_user("otto")
    client.force_login(other)
    response = client.post(path)
    assert response.status_code == 410 and b"already been used" in response.content
    assert not Membership.objects.filter(user=other).exists()


def test_expired_invitation_is_refused(actors, api_as):
    invitation, key = actions.do_create_invitation(
        Membership.objects.get(user=actors.admin, organization=actors.org), Role.MEMBER
    )
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    newcomer = make_user("late")
    response = api_as(newcomer).post("/api/v1/invitations/accept/", {"org": actors.org.slug, "key": key}, format="json")
    assert response.status_code == 400
    assert "has expired" in response.json()["error"]["message"]
    assert not Membership.objects.filter(user=newcomer).exists()


def test_invitation_for_another_organisation_is_refused(actors, api_as):
    invitation, key = actions.do_create_invitation(Membership.objects.get(user=actors.outsider), Role.MEMBER)
    newcomer = make_user("confused")
    # The key is Charlie's organisation's, the link claims Alice's.
    response = api_as(newcomer).post("/api/v1/invitations/accept/", {"org": actors.org.slug, "key": key}, format="json")
    assert response.status_code == 404
    assert "another organisation" in response.json()["error"]["message"]
    assert not Membership.objects.filter(user=newcomer).exists()
    invitation.refresh_from_db()
    assert invitation.state == "pending"


def test_revoked_and_unknown_invitations(actors, api_as, client):
    admin = Membership.objects.get(user=actors.admin, organization=actors.org)
    invitation, key = actions.do_create_invitation(admin, Role.MEMBER)
    assert (
        api_as(actors.admin).delete(f"/api/v1/orgs/{actors.org.slug}/invitations/{invitation.pk}/").status_code == 204
    )
    newcomer = make_user("nobody")
    response = api_as(newcomer).post("/api/v1/invitations/accept/", {"org": actors.org.slug, "key": key}, format="json")
    assert response.status_code == 400 and "was revoked" in response.json()["error"]["message"]
    client.force_login(newcomer)
    response = client.get(f"/join/{actors.org.slug}/not-a-real-key/")
    assert response.status_code == 404 and b"not valid" in response.content


def test_existing_member_cannot_accept_again(actors, api_as):
    _, key = actions.do_create_invitation(
        Membership.objects.get(user=actors.admin, organization=actors.org), Role.ADMIN
    )
    response = api_as(actors.viewer).post(
        "/api/v1/invitations/accept/", {"org": actors.org.slug, "key": key}, format="json"
    )
    assert response.status_code == 400 and "already a member" in response.json()["error"]["message"]
    assert Membership.objects.get(user=actors.viewer, organization=actors.org).role == Role.VIEWER


def test_only_owners_grant_ownership(actors, api_as):
    response = api_as(actors.admin).post(
        f"/api/v1/orgs/{actors.org.slug}/invitations/", {"role": "owner"}, format="json"
    )
    assert response.status_code == 403 and "Only an owner" in response.json()["error"]["message"]
    response = api_as(actors.owner).post(
        f"/api/v1/orgs/{actors.org.slug}/invitations/", {"role": "owner"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["key"] and body["url"].endswith(f"/join/{actors.org.slug}/{body['key']}/")
    assert "key" not in api_as(actors.owner).get(f"/api/v1/orgs/{actors.org.slug}/invitations/").json()["results"][0]


def test_last_owner_cannot_leave_or_be_demoted(actors, api_as):
    owner = Membership.objects.get(user=actors.owner, organization=actors.org)
    api = api_as(actors.owner)
    response = api.patch(f"/api/v1/orgs/{actors.org.slug}/members/{owner.pk}/", {"role": "admin"}, format="json")
    assert response.status_code == 400 and "at least one owner" in response.json()["error"]["message"]
    assert api.delete(f"/api/v1/orgs/{actors.org.slug}/members/{owner.pk}/").status_code == 400
    owner.refresh_from_db()
    assert owner.role == Role.OWNER
