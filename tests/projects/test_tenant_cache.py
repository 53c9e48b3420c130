"""Cached renderings thrown away when their rows change (projects/tenant_cache.py).

The dashboard and the project list API are served from the cache (the test suite's Redis);
every kind of write that can change what they show must show on the next request.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import override_settings
from django.urls import reverse

from projects import actions, tenant_cache
from projects.models import Job, JobStatus, LanguageModel, Membership, Organization, Project, TensorRecord
from runtime.models import Agent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def dashboard(client, org) -> str:
    """The dashboard's main part (the header carries a CSRF token, new on every page)."""
    response = client.get(reverse("dashboard", kwargs={"org_slug": org.slug}))
    assert response.status_code == 200
    page = response.content.decode()
    return page[page.index("<main") :]


def test_the_dashboard_is_built_once_while_nothing_changes(actors, client_as, django_assert_max_num_queries):
    client = client_as(actors.member)
    first = dashboard(client, actors.org)
    # Session, user, membership and the organisation switcher: the content's own queries are gone.
    with django_assert_max_num_queries(4):
        again = dashboard(client, actors.org)
    assert again == first


def test_every_kind_of_write_shows_on_the_next_dashboard(actors, client_as):
    client = client_as(actors.member)
    org = actors.org
    assert "Cardiology" in dashboard(client, org)

    # Model.save() (through an action)
    actions.do_create_project(org, actors.owner, "Neurology")
    assert "Neurology" in dashboard(client, org)

    # QuerySet.update()
    Project.objects.for_org(org).filter(name="Neurology").update(name="Neuro-oncology")
    page = dashboard(client, org)
    assert "Neuro-oncology" in page and "Neurology<" not in page

    # a job's progress, written by a worker with update()
    job = Job.objects.create(
        organization=org,
        project=actors.project,
        kind="projects.recount_stats",
        status=JobStatus.RUNNING,
        progress=0.25,
        message="Counting rows",
        created_by=actors.owner,
    )
    assert "Counting rows" in dashboard(client, org)
    Job.objects.filter(pk=job.pk).update(progress=0.75, message="Almost there")
    page = dashboard(client, org)
    assert "Almost there" in page and "Counting rows" not in page

    # membership removed (delete()) -> the member count
    assert "<strong>4</strong> members" in page
    Membership.objects.for_org(org).filter(user=actors.viewer).delete()
    assert "<strong>3</strong> members" in dashboard(client, org)

    # the organisation renamed
    Organization.objects.filter(pk=org.pk).update(name="Alice Research")
    assert "<h1>Alice Research</h1>" in dashboard(client, org)

    # an agent, and the name of the model behind it (a related row)
    model = LanguageModel.objects.create(
        organization=org, project=actors.project, name="tiny-teacher", format="gguf", status="ready"
    )
    Agent.objects.create(organization=org, project=actors.project, name="Triage bot", slug="triage", model=model)
    page = dashboard(client, org)
    assert "Triage bot" in page and "tiny-teacher" in page
    model.name = "tiny-teacher-v2"
    model.save()
    assert "tiny-teacher-v2" in dashboard(client, org)

    # bulk_create
    Project.objects.bulk_create([Project(organization=org, name="Bulk project", slug="bulk-project")])
    assert "<strong>3</strong> projects" in dashboard(client, org)


def test_another_organisations_writes_leave_this_ones_rendering_alone(actors, client_as):
    client = client_as(actors.member)
    dashboard(client, actors.org)
    versions_before = cache.get_many([tenant_cache._version_key(actors.org.pk, Project)])
    actions.do_create_project(actors.other_org, actors.outsider, "Elsewhere")
    assert cache.get_many([tenant_cache._version_key(actors.org.pk, Project)]) == versions_before
    assert "Elsewhere" not in dashboard(client, actors.org)


def test_the_role_is_part_of_the_rendering(actors, client_as):
    Project.objects.for_org(actors.org).delete()  # the empty state offers "Create a project" to writers
    assert "Create a project" in dashboard(client_as(actors.member), actors.org)
    assert "Create a project" not in dashboard(client_as(actors.viewer), actors.org)


def test_the_project_list_api_follows_writes(actors, api_as):
    _, secret = actions.do_create_token(actors.org, actors.member, "script")
    api = api_as(token=secret)
    url = f"/api/v1/orgs/{actors.org.slug}/projects/"
    assert [p["name"] for p in api.get(url).json()["results"]] == ["Cardiology"]
    actions.do_create_project(actors.org, actors.owner, "Dermatology")
    assert sorted(p["name"] for p in api.get(url).json()["results"]) == ["Cardiology", "Dermatology"]
    actions.do_archive_project(Project.objects.for_org(actors.org).get(name="Dermatology"), True)
    assert [p["name"] for p in api.get(url).json()["results"]] == ["Cardiology"]
    assert [p["name"] for p in api.get(url + "?archived=1").json()["results"]] == ["Dermatology"]
    # Another organisation's token never sees this organisation's cached page.
    _, other = actions.do_create_token(actors.other_org, actors.outsider, "script")
    assert api_as(token=other).get(url).status_code == 404


def test_a_value_built_while_a_write_happened_is_not_used_afterwards(actors):
    calls = []

    def build_with_a_write_in_between():
        # As if another request wrote a project after this one read the versions (and read
        # the rows before that write landed).
        calls.append("built")
        if len(calls) == 1:
            actions.do_create_project(actors.org, actors.owner, "Written meanwhile")
        return len(calls)

    assert tenant_cache.cached(actors.org.pk, "probe", [Project], build_with_a_write_in_between) == 1
    assert tenant_cache.cached(actors.org.pk, "probe", [Project], build_with_a_write_in_between) == 2
    assert tenant_cache.cached(actors.org.pk, "probe", [Project], build_with_a_write_in_between) == 2


def test_versions_are_replaced_again_when_the_transaction_commits(actors, django_capture_on_commit_callbacks):
    key = tenant_cache._version_key(actors.org.pk, Project)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with transaction.atomic():
            actions.do_create_project(actors.org, actors.owner, "Committed later")
            during = cache.get(key)
    assert during is not None  # replaced at once, for reads in the same transaction
    for callback in callbacks:
        callback()
    assert cache.get(key) not in (None, during)  # and again at commit


def test_untracked_models_cannot_be_depended_on_or_tracked_when_nested(actors):
    with pytest.raises(ValueError, match="untracked models: TensorRecord"):
        tenant_cache.cached(actors.org.pk, "x", [TensorRecord], lambda: 1)
    with pytest.raises(ValueError, match="more than one step"):
        tenant_cache.track(TensorRecord)


def test_an_unreachable_cache_still_serves_pages_and_keeps_writes(actors, client_as):
    client = client_as(actors.member)
    nowhere = {
        "default": {
            "BACKEND": "hartonomous_web.redis_cache.SharedRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2},
        }
    }
    with override_settings(CACHES=nowhere):
        assert "Cardiology" in dashboard(client, actors.org)
        actions.do_create_project(actors.org, actors.owner, "Written without a cache")
        assert Project.objects.for_org(actors.org).filter(name="Written without a cache").exists()
        assert "Written without a cache" in dashboard(client, actors.org)
