"""Organisations and projects through pages and API, and bad input that must change nothing."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from projects.models import Job, Organization, Project
from tests.conftest import make_user


def test_signup_create_org_and_project_in_pages(client, db):
    response = client.post(
        "/accounts/signup/", {"username": "dora", "password1": "a-Long-passw0rd!", "password2": "a-Long-passw0rd!"}
    )
    assert response.status_code == 302
    assert client.get("/").url == "/orgs/new/"  # no organisation yet
    response = client.post("/orgs/new/", {"name": "Dora's Lab", "slug": ""})
    assert response.status_code == 302 and response.url == "/o/doras-lab/"
    response = client.post("/o/doras-lab/projects/", {"name": "Oncology QA", "description": "x"})
    assert response.status_code == 302 and response.url == "/o/doras-lab/projects/oncology-qa/"
    page = client.get("/o/doras-lab/").content.decode()
    assert "Oncology QA" in page and "Dora&#x27;s Lab" in page


def test_duplicate_slugs_get_a_clear_message_and_change_nothing(actors, client, api_as):
    api = api_as(actors.member)
    response = api.post(f"/api/v1/orgs/{actors.org.slug}/projects/", {"name": "Cardiology"}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert (
        error["code"] == "duplicate"
        and "already exists" in error["message"]
        and error["fields"] == {"slug": [error["message"]]}
    )
    assert Project.objects.for_org(actors.org).count() == 1
    # The same slug in another organisation is fine.
    assert (
        api_as(actors.outsider)
        .post(f"/api/v1/orgs/{actors.other_org.slug}/projects/", {"name": "Cardiology"}, format="json")
        .status_code
        == 201
    )
    # Organisation slugs are global.
    response = api_as(actors.member).post("/api/v1/orgs/", {"name": "Charlie Co"}, format="json")
    assert response.status_code == 409 and "already taken" in response.json()["error"]["message"]
    client.force_login(actors.member)
    response = client.post("/orgs/new/", {"name": "Another", "slug": "charlie-co"})
    assert response.status_code == 200 and "already taken" in response.content.decode()
    assert Organization.objects.filter(slug="charlie-co").count() == 1
    response = client.post(f"/o/{actors.org.slug}/projects/", {"name": "Cardiology"})
    assert response.status_code == 400 and "already exists" in response.content.decode()


def test_malformed_json_is_a_clear_400(actors, api_as):
    api = api_as(actors.member)
    response = api.generic(
        "POST", f"/api/v1/orgs/{actors.org.slug}/projects/", '{"name": "broken', content_type="application/json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error" and "JSON parse error" in error["message"]
    assert Project.objects.for_org(actors.org).count() == 1


def test_invalid_fields_name_the_field(actors, api_as):
    response = api_as(actors.member).post(f"/api/v1/orgs/{actors.org.slug}/projects/", {"name": ""}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]


def test_unknown_or_forbidden_job_kinds_and_projects(actors, api_as):
    api = api_as(actors.member)
    url = f"/api/v1/orgs/{actors.org.slug}/jobs/"
    response = api.post(url, {"kind": "os.system", "project": actors.project.slug}, format="json")
    assert response.status_code == 400 and "cannot be started here" in response.json()["error"]["message"]
    response = api.post(url, {"kind": "projects.recount_stats", "project": actors.other_project.slug}, format="json")
    assert response.status_code == 404 and "No project" in response.json()["error"]["message"]
    response = api.post(
        url, {"kind": "projects.recount_stats", "project": actors.project.slug, "params": {"x": 1}}, format="json"
    )
    assert response.status_code == 400 and "takes no parameters" in response.json()["error"]["message"]
    assert not Job.objects.exists()


def test_archived_project_runs_no_jobs_and_leaves_the_list(actors, api_as):
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/projects/"
    assert api.post(f"{base}{actors.project.slug}/archive/").json()["archived"] is True
    assert api.get(base).json()["results"] == []
    assert [p["slug"] for p in api.get(base + "?archived=1").json()["results"]] == [actors.project.slug]
    response = api.post(
        f"/api/v1/orgs/{actors.org.slug}/jobs/",
        {"kind": "projects.recount_stats", "project": actors.project.slug},
        format="json",
    )
    assert response.status_code == 400 and "archived" in response.json()["error"]["message"]
    assert api.post(f"{base}{actors.project.slug}/unarchive/").json()["archived"] is False


def test_cancel_and_retry_rules(actors, api_as):
    job = Job.objects.create(
        organization=actors.org, project=actors.project, kind="projects.recount_stats", status="succeeded"
    )
    api = api_as(actors.member)
    response = api.post(f"/api/v1/orgs/{actors.org.slug}/jobs/{job.pk}/cancel/")
    assert response.status_code == 409 and "nothing to cancel" in response.json()["error"]["message"]
    response = api.post(f"/api/v1/orgs/{actors.org.slug}/jobs/{job.pk}/retry/")
    assert response.status_code == 409
    # A job id of another organisation: 404, untouched.
    theirs = Job.objects.create(organization=actors.other_org, kind="projects.recount_stats", status="failed")
    assert api.post(f"/api/v1/orgs/{actors.org.slug}/jobs/{theirs.pk}/retry/").status_code == 404
    assert not theirs.retries.exists()


def test_job_pages_render_for_each_state(actors, client):
    client.force_login(actors.member)
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        job = Job.objects.create(
            organization=actors.org,
            project=actors.project,
            kind="projects.recount_stats",
            status=status,
            error="Boom: do X" if status == "failed" else "",
            progress=0.5,
        )
        page = client.get(f"/o/{actors.org.slug}/jobs/{job.pk}/").content.decode()
        assert f'data-status="{status}"' in page
        assert ("Boom: do X" in page) == (status == "failed")
        fragment = client.get(f"/o/{actors.org.slug}/jobs/{job.pk}/?fragment=panel").content.decode()
        assert fragment.lstrip().startswith("<section") and "<html" not in fragment
        assert ("data-poll-url" in fragment) == (status in ("queued", "running"))
        row = client.get(f"/o/{actors.org.slug}/jobs/{job.pk}/?fragment=row").content.decode()
        assert row.lstrip().startswith(f'<tr data-job-id="{job.pk}"')
        # A row still moving refreshes itself when the page's socket opens (events sent before
        # it connected) or, without a socket, by polling; a finished one is final.
        assert (f'data-poll-url="/o/{actors.org.slug}/jobs/{job.pk}/?fragment=row"' in row) == (
            status in ("queued", "running")
        )
    assert client.get(f"/o/{actors.org.slug}/jobs/?status=failed").context["jobs"].count() == 1


def test_window_counters_count_on_redis_and_on_other_caches():
    from django.test import override_settings

    from projects.api.throttling import count_in_window

    cache.clear()
    assert [count_in_window("probe", 5) for _ in range(3)] == [1, 2, 3]
    if hasattr(cache, "incr_with_expiry"):  # the Redis path: the counter expires on its own
        assert 0 < cache._cache.get_client(write=True).ttl(cache.make_and_validate_key("probe")) <= 5
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
        assert [count_in_window("probe", 5) for _ in range(3)] == [1, 2, 3]
    cache.clear()


def test_api_is_throttled(actors, api_as, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "2/minute", "user": "3/minute"},
    }
    from rest_framework.throttling import SimpleRateThrottle

    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    cache.clear()
    try:
        api = api_as(actors.member)
        responses = [api.get(f"/api/v1/orgs/{actors.org.slug}/projects/") for _ in range(4)]
        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        assert 0 < int(responses[-1]["Retry-After"]) <= 60  # what is left of this minute's window
        assert "throttled" in api.get("/api/v1/me/").json()["error"]["code"]
        # Each user has a counter of their own.
        assert api_as(actors.viewer).get(f"/api/v1/orgs/{actors.org.slug}/projects/").status_code == 200
    finally:
        SimpleRateThrottle.THROTTLE_RATES = original
        cache.clear()


def test_password_change_and_logout(client, db):
    user = make_user("pat")
    client.force_login(user)
    response = client.post(
        "/accounts/password_change/",
        {"old_password": "pw-pat-123!", "new_password1": "N3w-secret-phrase", "new_password2": "N3w-secret-phrase"},
    )
    assert response.status_code == 302
    client.post("/accounts/logout/")
    assert client.get("/o/anything/").status_code == 302  # to the login page
    assert client.login(username="pat", password="N3w-secret-phrase")


def test_csrf_is_enforced_on_pages(actors):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(actors.member)
    assert strict.post(f"/o/{actors.org.slug}/projects/", {"name": "Sneaky"}).status_code == 403
    assert not Project.objects.filter(name="Sneaky").exists()


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_api_schema_and_docs(client, db, path):
    response = client.get(path)
    assert response.status_code == 200
    if path == "/api/schema/":
        body = response.content.decode()
        for route in ("/api/v1/orgs/{org_slug}/projects/", "/api/v1/orgs/{org_slug}/jobs/{id}/cancel/", "bearerAuth"):
            assert route in body
    else:
        assert b"swagger-ui" in response.content and b"cdn." not in response.content


def test_signup_returns_to_the_page_that_asked_for_it(client, db):
    response = client.post(
        "/accounts/signup/?next=/join/x/y/",
        {"username": "newbie", "password1": "a-Long-passw0rd!", "password2": "a-Long-passw0rd!", "next": "/join/x/y/"},
    )
    assert response.status_code == 302 and response.url == "/join/x/y/"
    client.logout()
    response = client.post(
        "/accounts/signup/",
        {
            "username": "evil",
            "password1": "a-Long-passw0rd!",
            "password2": "a-Long-passw0rd!",
            "next": "https://evil.example/",
        },
    )
    assert response.url == "/"  # never off-site


def test_list_filters_narrow_api_lists(actors, api_as):
    Job.objects.create(organization=actors.org, project=actors.project, kind="projects.recount_stats", status="failed")
    Job.objects.create(organization=actors.org, kind="tests.slow_count", status="succeeded")
    api = api_as(actors.member)
    base = f"/api/v1/orgs/{actors.org.slug}/jobs/"
    assert api.get(base).json()["count"] == 2
    assert [j["status"] for j in api.get(base + "?status=failed").json()["results"]] == ["failed"]
    assert [j["kind"] for j in api.get(base + f"?project={actors.project.slug}").json()["results"]] == [
        "projects.recount_stats"
    ]
    assert api.get(base + "?kind=tests.slow_count").json()["count"] == 1


def test_the_page_frame_links_the_users_organisations_and_the_current_ones_sections(actors, client_as):
    from django.urls import reverse

    from projects import actions

    third = actions.do_create_organization(actors.member, "Aardvark Org", "aardvark")
    page = client_as(actors.member).get(reverse("project-list", kwargs={"org_slug": actors.org.slug})).content.decode()
    switcher = page[page.index('<select id="org-switch"') : page.index("</select>")]
    # The member's organisations, by name, each option the organisation's dashboard; the current one selected.
    assert switcher.index("Aardvark Org") < switcher.index("Alice Labs")
    assert f'value="{reverse("dashboard", kwargs={"org_slug": third.slug})}"' in switcher
    assert f'value="{reverse("dashboard", kwargs={"org_slug": actors.org.slug})}" selected' in switcher
    assert "Charlie Co" not in switcher
    for name in ("dashboard", "project-list", "model-list", "job-list", "org-settings"):
        assert f'href="{reverse(name, kwargs={"org_slug": actors.org.slug})}"' in page
    assert f'action="{reverse("logout")}"' in page
