"""The analysis REST API with a personal token, on a tiny real llama: capture → run → coders → features → export.

Jobs run in this process (``execute``), as a worker would run them.
"""

from __future__ import annotations

import pytest

from projects import actions
from projects.background import execute

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_script_captures_trains_reads_features_and_exports_through_the_api(actors, teacher, dataset, api_as):
    _, secret = actions.do_create_token(actors.org, actors.member, "script")
    api = api_as(token=secret)
    base = f"/api/v1/orgs/{actors.org.slug}"

    plan = api.post(f"{base}/captures/plan/", {"teacher": teacher.pk, "token_budget": 2048}, format="json")
    assert plan.status_code == 200 and plan.json()["layers"] == [0, 1, 2] and plan.json()["estimated_bytes"] > 0
    bad = api.post(f"{base}/captures/", {"teacher": teacher.pk, "dataset": dataset.pk, "hookpoints": "attn.*"},
                   format="json")  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"]["fields"] == {"hookpoints": [bad.json()["error"]["message"]]}

    created = api.post(
        f"{base}/captures/",
        {"teacher": teacher.pk, "dataset": dataset.pk, "hookpoints": "model.layers.*.mlp", "token_budget": 2048,
         "seq_len": 32, "batch_size": 4, "tokens_per_shard": 512},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.json()
    capture = created.json()
    execute(capture["job"])
    assert api.get(f"{base}/captures/{capture['id']}/").json()["status"] == "complete"

    run = api.post(f"{base}/coder-runs/", {"capture": capture["id"], "kinds": ["skip_transcoder"], "expansion": 2,
                                           "k": 4, "batch_size": 128}, format="json").json()  # fmt: skip
    assert run["optimizer"] == "signum" and run["lr"] is None and run["source"] == "shards"  # the defaults
    execute(run["job"])
    run = api.get(f"{base}/coder-runs/{run['id']}/").json()
    assert run["status"] == "complete" and len(run["coders"]) == 3
    coder = api.get(f"{base}/coders/?run={run['id']}&layer=1").json()["results"][0]
    assert coder["kind"] == "skip_transcoder" and coder["fvu"] is not None and coder["d_sae"] == 64

    described = api.post(f"{base}/coders/{coder['id']}/describe/")
    assert described.status_code == 201
    execute(described.json()["id"])
    features = api.get(f"{base}/features/?coder={coder['id']}&alive=1&sort=max").json()["results"]
    assert features and features[0]["max_activation"] >= features[-1]["max_activation"]
    assert features[0]["contexts"] and features[0]["label"] and features[0]["layer"] == 1

    export = api.post(f"{base}/coder-exports/", {"run": run["id"], "format": "circuit_tracer"}, format="json")
    assert export.status_code == 201, export.json()
    early = api.get(f"{base}/coder-exports/{export.json()['id']}/download/")
    assert early.status_code == 409  # queued: nothing to download yet
    execute(export.json()["job"])
    download = api.get(f"{base}/coder-exports/{export.json()['id']}/download/")
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"

    # Another organisation's token sees none of it.
    _, outsider = actions.do_create_token(actors.other_org, actors.outsider, "other")
    other = api_as(token=outsider)
    assert other.get(f"/api/v1/orgs/{actors.other_org.slug}/captures/").json()["count"] == 0
    assert other.get(f"/api/v1/orgs/{actors.org.slug}/captures/{capture['id']}/").status_code == 404
