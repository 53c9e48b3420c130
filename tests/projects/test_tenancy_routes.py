"""Tenant isolation and roles, proven over every registered route.

The walkers enumerate Django's URL resolver, so a route added later is covered
automatically — or the test fails and asks for sample arguments for it.
"""

from __future__ import annotations

import io
import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from analysis.models import Capture, Coder, CoderExport, CoderRun, Feature
from distillation.models import Build, ImportanceAnalysis, Recipe
from projects import actions, blobs
from projects.models import ApiToken, Dataset, Invitation, Job, LanguageModel, Membership, ModelFile, Role
from runtime.models import Agent, Conversation, Endpoint, InferenceRecord, Message

UNSAFE = ("post", "put", "patch", "delete")

#: Routes outside any organisation, and why each is fine for anyone signed in (or not).
OPEN_ROUTES = {
    "home": "redirects to one of your own organisations",
    "signup": "creates an account",
    "org-create": "creates a new organisation owned by the caller",
    "join": "invitation links: a valid key is the credential (tested in test_invitations)",
    "healthz": "process health",
    "readyz": "readiness",
    "login": "auth",
    "logout": "auth",
    "password_change": "auth",
    "password_change_done": "auth",
    "password_reset": "auth",
    "password_reset_done": "auth",
    "password_reset_confirm": "auth",
    "password_reset_complete": "auth",
    "api-me": "describes the caller only",
    "api-invitation-accept": "a valid key is the credential (tested in test_invitations)",
    "api-org-list": "lists only the caller's organisations (tested below)",
    "api-schema": "public API description",
    "api-docs": "public API description",
}

#: The OpenAI-compatible API (/v1/): no organisation in the URL, bearer tokens only; the token's
#: organisation is the scope. test_token_routes_serve_only_the_tokens_organisation walks them.
TOKEN_ROUTES = {
    "openai-models": "lists the agents and endpoints of the token's organisation",
    "openai-model": "one agent or endpoint of the token's organisation",
    "openai-chat-completions": "chats with an agent or endpoint of the token's organisation (`model` in the body)",
}

#: Values of the `action` argument each route understands.
ACTIONS = {
    "project-action": ["archive", "unarchive", "recount"],
    "job-action": ["cancel", "retry"],
    "member-action": ["role", "remove"],
    "dataset-action": ["split", "count-tokens", "delete"],
    "agent-action": ["deploy", "undeploy", "chat", "delete"],
    "endpoint-action": ["change", "promote", "stop", "chat", "delete"],
}

#: Conversation pages and API: a conversation is its owner's (admins read all), so a viewer gets 404 on the owner's.
PRIVATE_CONVERSATION_ROUTES = {"agent-conversation", "endpoint-conversation", "api-conversation-detail"}

#: Writes a viewer may make, and why.
VIEWER_MAY_WRITE = {
    ("tokens", "post"): "personal API tokens: a token never exceeds its owner's role",
    ("token-revoke", "post"): "revoking one's own token",
    ("api-token-list", "post"): "personal API tokens",
    ("api-token-detail", "delete"): "revoking one's own token",
    ("member-action", "post", "remove"): "leaving the organisation (only one's own membership; tested below)",
}


def walk(patterns=None, prefix_params=(), namespace=""):
    """Yield (namespaced name, parameter names) of every named URL pattern."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        params = (*prefix_params, *entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from walk(entry.url_patterns, params, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            yield namespace + entry.name, tuple(p for p in params if p != "format")


#: The Django admin (with django-rq's queue pages) is for the platform's operators
#: (staff), not for tenants; test_admin_is_staff_only covers it.
ALL_ROUTES = {name: params for name, params in walk() if not name.startswith("admin:")}
ORG_ROUTES = {name: params for name, params in ALL_ROUTES.items() if "org_slug" in params and name not in OPEN_ROUTES}


class Objects:
    """One object of each kind in an organisation, to fill URL arguments."""

    def __init__(self, org, project, user):
        self.org, self.project = org, project
        self.job = Job.objects.create(organization=org, project=project, kind="projects.recount_stats", status="failed")
        self.member = Membership.objects.for_org(org).get(user=user)
        self.invitation, self.key = actions.do_create_invitation(self.member, Role.MEMBER)
        self.token, self.secret = actions.do_create_token(org, user, "walker")
        self.upload = actions.do_start_upload(project, user, filename="walker.gguf", size=10)
        self.model = LanguageModel.objects.create(
            organization=org, project=project, name="walker", format="gguf", status="ready"
        )
        blob = blobs.store_stream(io.BytesIO(f"weights of {org.slug}".encode()))
        ModelFile.objects.create(model=self.model, path="walker.gguf", blob=blob)
        self.dataset = Dataset.objects.create(
            organization=org, project=project, name="walker", format="txt", source_blob=blob
        )
        self.capture = Capture.objects.create(
            organization=org, project=project, teacher=self.model, dataset=self.dataset, token_budget=10,
            status="complete", layers=[0], d_model=8, n_tokens=10,
        )  # fmt: skip
        self.run = CoderRun.objects.create(organization=org, capture=self.capture, layers=[0], kinds=["sae"])
        self.coder = Coder.objects.create(
            run=self.run, layer=0, kind="sae", d_sae=16, config_blob=blob, weights_blob=blob
        )
        self.feature = Feature.objects.create(coder=self.coder, index=3, frequency=0.5)
        self.export = CoderExport.objects.create(
            organization=org, run=self.run, format="saelens", kind="sae", status="complete", blob=blob
        )
        self.importance = ImportanceAnalysis.objects.create(
            organization=org, project=project, teacher=self.model, dataset=self.dataset, token_budget=10
        )
        self.recipe = Recipe.objects.create(
            organization=org, project=project, teacher=self.model, analysis=self.importance, name=f"walker {org.slug}"
        )
        self.build = Build.objects.create(organization=org, recipe=self.recipe)
        # Slugs name the organisation: another organisation's slug must not find one's own agent.
        self.agent = Agent.objects.create(
            organization=org, project=project, name="walker", slug=f"walker-{org.slug}", model=self.model
        )
        self.endpoint = Endpoint.objects.create(
            organization=org, project=project, name="walker ab", slug=f"walker-ab-{org.slug}", baseline=self.agent
        )
        self.conversation = Conversation.objects.create(organization=org, agent=self.agent, user=user)
        self.answer = Message.objects.create(conversation=self.conversation, role="assistant", content="walker")
        self.inference = InferenceRecord.objects.create(
            organization=org, agent=self.agent, source="api", outcome="complete"
        )

    def kwargs(self, name: str, params) -> list[dict]:
        values = {
            "org_slug": self.org.slug,
            "project_slug": self.project.slug,
            "job_id": self.job.pk,
            "member_id": self.member.pk,
            "invitation_id": self.invitation.pk,
            "token_id": self.token.pk,
            "key": self.key,
            "model_id": self.model.pk,
            "path": "walker.gguf",
            "dataset_id": self.dataset.pk,
            "agent_slug": self.agent.slug,
            "endpoint_slug": self.endpoint.slug,
            "conversation_id": self.conversation.pk,
            "message_id": self.answer.pk,
            "capture_id": self.capture.pk,
            "run_id": self.run.pk,
            "coder_id": self.coder.pk,
            "index": self.feature.index,
            "export_id": self.export.pk,
            "analysis_id": self.importance.pk,
            "recipe_id": self.recipe.pk,
            "build_id": self.build.pk,
            "model": self.agent.slug,
        }
        pk_by_route = {
            "api-project": self.project.slug,
            "api-job": self.job.pk,
            "api-member": self.member.pk,
            "api-invitation": self.invitation.pk,
            "api-token": self.token.pk,
            "api-org": self.org.slug,
            "api-upload": self.upload.pk,
            "api-model": self.model.pk,
            "api-dataset": self.dataset.pk,
            "api-agent": self.agent.pk,
            "api-endpoint": self.endpoint.pk,
            "api-conversation": self.conversation.pk,
            "api-inference": self.inference.pk,
            "api-capture": self.capture.pk,
            "api-coder-run": self.run.pk,
            "api-coder-export": self.export.pk,
            "api-coder": self.coder.pk,
            "api-feature": self.feature.pk,
            "api-importance": self.importance.pk,
            "api-recipe": self.recipe.pk,
            "api-build": self.build.pk,
        }
        base = {}
        for param in params:
            if param in values:
                base[param] = values[param]
            elif param == "pk":
                # The longest known prefix: "api-dataset-count-tokens" is a route of "api-dataset".
                base["pk"] = pk_by_route[max((k for k in pk_by_route if name.startswith(k + "-")), key=len)]
            elif param == "action":
                continue
            else:
                raise AssertionError(
                    f"Route {name!r} has a parameter {param!r} the tenancy walker cannot fill: teach it."
                )
        if "action" in params:
            assert name in ACTIONS, f"Route {name!r} takes an action; list its actions in ACTIONS."
            return [{**base, "action": action} for action in ACTIONS[name]]
        return [base]


def test_every_route_is_either_org_scoped_or_explained():
    unexplained = sorted(set(ALL_ROUTES) - set(ORG_ROUTES) - set(OPEN_ROUTES) - set(TOKEN_ROUTES))
    assert not unexplained, (
        f"Routes outside /o/<org>/ or /api/v1/orgs/<org>/ without a reason in OPEN_ROUTES: {unexplained}"
    )
    assert len(ORG_ROUTES) >= 25  # the walker really found the organisation's routes


@pytest.mark.parametrize("as_token", [False, True], ids=["session", "token"])
def test_outsider_gets_404_on_every_org_route_and_method(actors, client, api_as, as_token):
    """Charlie (member of another organisation only) asks for Alice's objects: always 404."""
    objects = Objects(actors.org, actors.project, actors.owner)
    outsider_token = actions.do_create_token(actors.other_org, actors.outsider, "charlie")[1]
    client.force_login(actors.outsider)
    api = api_as(token=outsider_token) if as_token else api_as(actors.outsider)
    checked = 0
    for name, params in ORG_ROUTES.items():
        is_api = name.startswith("api-")
        if as_token and not is_api:
            continue
        for kwargs in objects.kwargs(name, params):
            url = reverse(name, kwargs=kwargs)
            caller = api if is_api else client
            for method in ("get", *UNSAFE):
                response = getattr(caller, method)(url)
                assert response.status_code == 404, f"{method.upper()} {url} as outsider -> {response.status_code}"
                checked += 1
    assert checked > 50
    # And nothing changed for Alice.
    assert Job.objects.filter(pk=objects.job.pk, status="failed").exists()
    assert ApiToken.objects.get(pk=objects.token.pk).revoked_at is None
    assert Invitation.objects.get(pk=objects.invitation.pk).state == "pending"


def test_other_orgs_objects_are_404_inside_your_own_org(actors, client, api_as):
    """Alice is in her organisation, but names Charlie's objects in the URL: 404."""
    theirs = Objects(actors.other_org, actors.other_project, actors.outsider)
    mine = Objects(actors.org, actors.project, actors.owner)
    client.force_login(actors.owner)
    api = api_as(actors.owner)
    checked = 0
    for name, params in ORG_ROUTES.items():
        if not (set(params) - {"org_slug", "action"}):
            continue  # a collection: nothing of theirs in the URL
        is_api = name.startswith("api-")
        for kwargs in theirs.kwargs(name, params):
            kwargs["org_slug"] = mine.org.slug
            url = reverse(name, kwargs=kwargs)
            for method in ("get", *UNSAFE):
                response = getattr(api if is_api else client, method)(url)
                # 405 answers "this route has no such method", whatever the object: it tells nothing.
                assert response.status_code in (404, 405), (
                    f"{method.upper()} {url} (their object, my org) -> {response.status_code}"
                )
                checked += response.status_code == 404
    assert checked > 20
    assert Job.objects.filter(pk=theirs.job.pk, status="failed").exists()


def _viewer_exempt(name, method, kwargs):
    return (name, method) in VIEWER_MAY_WRITE or (name, method, kwargs.get("action")) in VIEWER_MAY_WRITE


def test_viewer_reads_everything_and_writes_nothing(actors, client, api_as):
    objects = Objects(actors.org, actors.project, actors.owner)
    client.force_login(actors.viewer)
    api = api_as(actors.viewer)
    readable_by_viewer = 0
    for name, params in ORG_ROUTES.items():
        is_api = name.startswith("api-")
        caller = api if is_api else client
        for kwargs in objects.kwargs(name, params):
            url = reverse(name, kwargs=kwargs)
            response = caller.get(url)
            if name.startswith("api-invitation"):
                assert response.status_code == 403  # invitations are for admins
            elif name in ("api-token-detail", "token-revoke"):
                assert response.status_code in (404, 405)  # someone else's token / POST-only
            elif name in PRIVATE_CONVERSATION_ROUTES:
                assert response.status_code == 404, (
                    f"GET {url} (the owner's conversation) as viewer -> {response.status_code}"
                )
            else:
                # 400: the route needs a query parameter the walker does not give (e.g. compare ?with=).
                assert response.status_code in (200, 400, 405), f"GET {url} as viewer -> {response.status_code}"
                readable_by_viewer += response.status_code == 200
            for method in UNSAFE:
                if _viewer_exempt(name, method, kwargs):
                    continue
                response = getattr(caller, method)(url, {}, **({"format": "json"} if is_api else {}))
                assert response.status_code in (403, 405), f"{method.upper()} {url} as viewer -> {response.status_code}"
    assert readable_by_viewer >= 15
    objects.job.refresh_from_db()
    assert objects.job.status == "failed" and not objects.job.retries.exists()
    actors.project.refresh_from_db()
    assert actors.project.archived_at is None


def test_token_routes_serve_only_the_tokens_organisation(actors, client):
    """/v1/: without a token (a browser session is not one) 401; Charlie's token never reaches Alice's
    agents; a viewer's token reads but does not chat. Nothing reaches an agent, so no audit row."""
    assert {name for name in ALL_ROUTES if name.startswith("openai-")} == set(TOKEN_ROUTES)
    objects = Objects(actors.org, actors.project, actors.owner)
    outsider = actions.do_create_token(actors.other_org, actors.outsider, "charlie")[1]
    viewer = actions.do_create_token(actors.org, actors.viewer, "vera")[1]
    body = json.dumps({"model": objects.agent.slug, "messages": [{"role": "user", "content": "hi"}]})
    client.force_login(actors.owner)
    checked = 0
    for name in TOKEN_ROUTES:
        for kwargs in objects.kwargs(name, ALL_ROUTES[name]):
            url = reverse(name, kwargs=kwargs)
            for method in ("get", *UNSAFE):

                def call(token=None, method=method, url=url):
                    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
                    if method == "get":
                        return client.get(url, **headers)
                    return getattr(client, method)(url, body, content_type="application/json", **headers)

                where = f"{method.upper()} {url}"
                assert call().status_code in (401, 405), f"{where} with only a session"
                theirs = call(outsider)
                if theirs.status_code == 200:  # a list: Charlie's organisation's, without Alice's agents
                    assert objects.agent.slug not in theirs.content.decode(), f"{where} as outsider lists Alice's agent"
                else:
                    assert theirs.status_code in (404, 405), f"{where} as outsider -> {theirs.status_code}"
                expected = (200, 405) if method == "get" else (403, 405)
                assert call(viewer).status_code in expected, f"{where} as viewer"
                checked += 1
    assert checked >= 12
    assert not InferenceRecord.objects.exclude(pk=objects.inference.pk).exists()


def test_member_cannot_manage_members_or_invitations(actors, client, api_as):
    api = api_as(actors.member)
    viewer_membership = Membership.objects.get(organization=actors.org, user=actors.viewer)
    base = f"/api/v1/orgs/{actors.org.slug}"
    assert api.patch(f"{base}/members/{viewer_membership.pk}/", {"role": "admin"}, format="json").status_code == 403
    assert api.delete(f"{base}/members/{viewer_membership.pk}/").status_code == 403
    assert api.post(f"{base}/invitations/", {"role": "member"}, format="json").status_code == 403
    assert api.delete(f"{base}/").status_code == 403
    client.force_login(actors.member)
    assert (
        client.post(
            reverse(
                "member-action",
                kwargs={"org_slug": actors.org.slug, "member_id": viewer_membership.pk, "action": "remove"},
            )
        ).status_code
        == 403
    )
    viewer_membership.refresh_from_db()
    assert viewer_membership.role == Role.VIEWER


def test_admin_cannot_delete_org_but_owner_can(actors, api_as):
    base = f"/api/v1/orgs/{actors.org.slug}/"
    assert api_as(actors.admin).delete(base).status_code == 403
    assert api_as(actors.owner).delete(base).status_code == 204
    assert api_as(actors.owner).get(base).status_code == 404


def test_org_list_shows_only_your_organisations(actors, api_as):
    slugs = {o["slug"] for o in api_as(actors.member).get("/api/v1/orgs/").json()["results"]}
    assert slugs == {actors.org.slug}
    token = actions.do_create_token(actors.org, actors.owner, "t")[1]
    actions.do_create_organization(actors.owner, "Alice Side Project", "alice-side")
    assert {o["slug"] for o in api_as(token=token).get("/api/v1/orgs/").json()["results"]} == {actors.org.slug}
    assert {o["slug"] for o in api_as(actors.owner).get("/api/v1/orgs/").json()["results"]} == {
        actors.org.slug,
        "alice-side",
    }


def test_admin_is_staff_only(actors, client):
    client.force_login(actors.owner)  # an organisation owner is not platform staff
    for url in ("/django-admin/", "/django-admin/projects/job/", "/django-admin/django_rq/"):
        response = client.get(url)
        assert response.status_code == 302 and "/django-admin/login/" in response["Location"], url
