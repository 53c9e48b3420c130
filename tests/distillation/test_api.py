"""The students' REST API with a personal token: recipes by teacher, approve, build, and the one-shot distill."""

from __future__ import annotations

import pytest

from distillation.models import Build, Recipe
from projects import actions
from projects.background import execute
from projects.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

SMALL = {"token_budget": 32 * 4 * 4, "seq_len": 32, "batch_size": 4, "top_k": 8, "checkpoint_every": 2}


def test_a_script_reviews_approves_and_builds_through_the_api(actors, teacher, domain, api_as):
    _, secret = actions.do_create_token(actors.org, actors.member, "script")
    api = api_as(token=secret)
    base = f"/api/v1/orgs/{actors.org.slug}"
    started = api.post(f"{base}/importance/", {"teacher": teacher.pk, "dataset": domain.pk, "token_budget": 2048,
                                               "seq_len": 32, "sample_windows": 2}, format="json")  # fmt: skip
    assert started.status_code == 201, started.json()
    execute(started.json()["job"])
    recipes = api.get(f"{base}/recipes/?teacher={teacher.pk}").json()["results"]
    assert len(recipes) == 3 and {r["status"] for r in recipes} == {"proposed"}
    recipe = recipes[0]
    bad = api.patch(f"{base}/recipes/{recipe['id']}/", {"document": recipe["document"] | {"layers_kept": []}},
                    format="json")  # fmt: skip
    assert bad.status_code == 400 and "keeps no layer" in bad.json()["error"]["message"]
    small = recipe["document"] | {"calibration": recipe["document"]["calibration"] | SMALL, "quant_types": ["Q8_0"]}
    edited = api.patch(f"{base}/recipes/{recipe['id']}/", {"document": small}, format="json")
    assert edited.status_code == 200 and edited.json()["version"] == 2
    assert api.post(f"{base}/recipes/{recipe['id']}/build/").status_code == 409  # not approved yet
    approved = api.post(f"{base}/recipes/{recipe['id']}/approve/")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    build = api.post(f"{base}/recipes/{recipe['id']}/build/")
    assert build.status_code == 201
    execute(build.json()["job"])
    done = api.get(f"{base}/builds/{build.json()['id']}/").json()
    assert done["status"] == "built" and done["student"] and done["report"]["rows"]
    by_strategy = api.post(f"{base}/recipes/", {"analysis": started.json()["id"], "strategy": "layer_count",
                                                "n_layers": 2}, format="json")  # fmt: skip
    assert by_strategy.status_code == 201 and len(by_strategy.json()["document"]["layers_kept"]) == 2
    # Another organisation's token sees none of it.
    _, other = actions.do_create_token(actors.other_org, actors.outsider, "other")
    assert api_as(token=other).get(f"/api/v1/orgs/{actors.org.slug}/recipes/{recipe['id']}/").status_code == 404


def test_distill_analyses_approves_and_builds_in_one_request(actors, teacher, domain, api_as):
    _, secret = actions.do_create_token(actors.org, actors.member, "script")
    api = api_as(token=secret)
    response = api.post(f"/api/v1/orgs/{actors.org.slug}/distill/", {"teacher": teacher.pk, "dataset": domain.pk,
                        "fraction": 0.6, "token_budget": 2048, "seq_len": 32}, format="json")  # fmt: skip
    assert response.status_code == 201, response.json()
    execute(response.json()["job"])
    job = Job.objects.get(pk=response.json()["job"])
    assert job.status == "succeeded", job.error
    build = Build.objects.get(pk=job.result["build"])
    recipe = Recipe.objects.get(pk=build.recipe_id)
    assert recipe.strategy == "importance_ratio" and recipe.approved_by == actors.member
    assert recipe.estimates["fraction"] == pytest.approx(0.6, abs=0.1) and build.status == "queued"
