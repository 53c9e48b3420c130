"""Personal API tokens: shown once, stored hashed, scoped to one organisation, revocable."""

from __future__ import annotations

from projects import actions
from projects.models import ApiToken, Membership, hash_secret


def test_token_created_in_the_api_is_shown_once_and_stored_hashed(actors, api_as):
    api = api_as(actors.member)
    response = api.post(f"/api/v1/orgs/{actors.org.slug}/tokens/", {"name": "eval script"}, format="json")
    assert response.status_code == 201
    secret = response.json()["token"]
    assert secret.startswith("hart_") and len(secret) > 40
    row = ApiToken.objects.get(pk=response.json()["id"])
    assert row.token_hash == hash_secret(secret) and secret not in (row.token_hash, row.prefix)
    assert secret.startswith(row.prefix)
    listed = api.get(f"/api/v1/orgs/{actors.org.slug}/tokens/").json()["results"]
    assert [t["name"] for t in listed] == ["eval script"] and "token" not in listed[0]


def test_token_authenticates_and_records_last_use(actors, api_as):
    token, secret = actions.do_create_token(actors.org, actors.member, "ci")
    assert token.last_used_at is None
    response = api_as(token=secret).get(f"/api/v1/orgs/{actors.org.slug}/projects/")
    assert response.status_code == 200
    assert [p["slug"] for p in response.json()["results"]] == [actors.project.slug]
    token.refresh_from_db()
    assert token.last_used_at is not None
    me = api_as(token=secret).get("/api/v1/me/").json()
    assert me["username"] == "bob" and me["token_organization"] == actors.org.slug


def test_token_of_another_org_gets_404_even_if_user_is_member_there(actors, api_as):
    # Bob belongs to both organisations, but his token is for Charlie's only.
    Membership.objects.create(organization=actors.other_org, user=actors.member, role="member")
    _, secret = actions.do_create_token(actors.other_org, actors.member, "other")
    assert api_as(token=secret).get(f"/api/v1/orgs/{actors.org.slug}/projects/").status_code == 404
    assert api_as(token=secret).get(f"/api/v1/orgs/{actors.other_org.slug}/projects/").status_code == 200


def test_revoked_token_is_refused(actors, api_as):
    token, secret = actions.do_create_token(actors.org, actors.member, "old")
    assert api_as(actors.member).delete(f"/api/v1/orgs/{actors.org.slug}/tokens/{token.pk}/").status_code == 204
    response = api_as(token=secret).get(f"/api/v1/orgs/{actors.org.slug}/projects/")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid, expired or revoked API token."


def test_token_of_a_removed_member_stops_working(actors, api_as):
    token, secret = actions.do_create_token(actors.org, actors.member, "ci")
    membership = Membership.objects.get(organization=actors.org, user=actors.member)
    assert api_as(actors.admin).delete(f"/api/v1/orgs/{actors.org.slug}/members/{membership.pk}/").status_code == 204
    assert api_as(token=secret).get(f"/api/v1/orgs/{actors.org.slug}/projects/").status_code == 401
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_token_of_a_deleted_membership_without_revocation_is_refused(actors, api_as):
    """Even if a membership row disappears by another path, the token checks membership."""
    _, secret = actions.do_create_token(actors.org, actors.member, "ci")
    Membership.objects.filter(organization=actors.org, user=actors.member).delete()
    response = api_as(token=secret).get(f"/api/v1/orgs/{actors.org.slug}/projects/")
    assert response.status_code == 401
    assert "no longer a member" in response.json()["error"]["message"]


def test_token_acts_with_its_owners_current_role(actors, api_as):
    _, secret = actions.do_create_token(actors.org, actors.viewer, "read-only")
    api = api_as(token=secret)
    assert api.get(f"/api/v1/orgs/{actors.org.slug}/projects/").status_code == 200
    assert api.post(f"/api/v1/orgs/{actors.org.slug}/projects/", {"name": "X"}, format="json").status_code == 403


def test_you_only_see_and_revoke_your_own_tokens(actors, api_as):
    theirs, _ = actions.do_create_token(actors.org, actors.owner, "alice's")
    api = api_as(actors.member)
    assert api.get(f"/api/v1/orgs/{actors.org.slug}/tokens/").json()["results"] == []
    assert api.delete(f"/api/v1/orgs/{actors.org.slug}/tokens/{theirs.pk}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_malformed_and_unknown_tokens(actors, client):
    url = f"/api/v1/orgs/{actors.org.slug}/projects/"
    response = client.get(url, HTTP_AUTHORIZATION="Bearer")
    assert response.status_code == 401 and "Malformed" in response.json()["error"]["message"]
    response = client.get(url, HTTP_AUTHORIZATION="Bearer hart_nope")
    assert response.status_code == 401


def test_tokens_page_shows_the_secret_once(actors, client):
    client.force_login(actors.member)
    url = f"/o/{actors.org.slug}/settings/tokens/"
    response = client.post(url, {"name": "notebook"})
    assert response.status_code == 200
    token = ApiToken.objects.get(user=actors.member)
    secret_shown = response.context["new_secret"]
    assert token.token_hash == hash_secret(secret_shown)
    assert secret_shown in response.content.decode()
    assert secret_shown not in client.get(url).content.decode()
