"""Labels from an agent: a real llama.cpp agent (a tiny GGUF with random weights) reads each feature's contexts,
its label is stored with its method and scored on held-out contexts; the helpers that build prompts and read
answers; and the refusals."""

from __future__ import annotations

import pytest

from analysis.actions import captures as capture_actions
from analysis.actions import coders as coder_actions
from analysis.actions import features as feature_actions
from analysis.actions import labels as label_actions
from analysis.jobs.labels import clean_label, explain_prompt, says_yes, snippet
from analysis.models import Capture, Coder, Feature
from projects.actions import ActionError
from projects.actions.teachers import do_import_model_files
from projects.background import execute
from runtime import actions as runtime_actions
from runtime import serving
from tests.support.tiny_models import TinyLlamaConfig, write_gguf_llama

pytestmark = pytest.mark.django_db(transaction=True)


def trained_coder(actors, teacher, dataset) -> Coder:
    capture = capture_actions.do_start_capture(
        teacher, dataset, actors.member, hookpoints="model.layers.1.mlp", token_budget=2048, seq_len=32,
        batch_size=4, tokens_per_shard=512,
    )  # fmt: skip
    execute(capture.job_id)
    run = coder_actions.do_start_coder_run(
        Capture.objects.get(pk=capture.pk), actors.member, kinds=["skip_transcoder"], expansion=2, k=4, batch_size=128
    )
    execute(run.job_id)
    return Coder.objects.select_related("run__capture").get(run=run)


@pytest.fixture
def described_coder(actors, teacher, dataset):
    coder = trained_coder(actors, teacher, dataset)
    execute(feature_actions.do_describe_features(coder, actors.member).pk)
    return coder


@pytest.fixture
def live_agent(actors, tmp_path, settings):
    settings.AGENT_STATE_DIR = tmp_path / "kv"
    serving.reset_model_cache()
    gguf = write_gguf_llama(tmp_path / "judge.gguf", TinyLlamaConfig(context_length=512))
    model = do_import_model_files(gguf, actors.project, actors.owner, name="judge")
    agent = runtime_actions.do_create_agent(actors.project, actors.owner, name="Judge", model=model,
                                            context_length=512, max_tokens=24, temperature=0.0)  # fmt: skip
    runtime_actions.do_deploy_agent(agent)
    agent = runtime_actions.finish_deployment(actors.org.pk, agent.pk)
    assert agent.status == "live", agent.error
    yield agent
    serving.reset_model_cache()


def test_an_agent_labels_the_most_frequent_features_and_each_label_is_scored(actors, described_coder, live_agent):
    job = label_actions.do_label_features(described_coder, actors.member, live_agent, limit=3)
    execute(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    top = list(Feature.objects.filter(coder=described_coder, frequency__gt=0).order_by("-frequency")[:3])
    for feature in top:
        assert feature.label_method == "agent:judge"
        assert feature.label_score is not None and -1.0 <= feature.label_score <= 1.0
    rest = Feature.objects.filter(coder=described_coder).exclude(pk__in=[f.pk for f in top])
    assert not rest.filter(label_method="agent:judge").exists()
    assert "features labelled by Judge" in job.message


def test_labelling_is_refused_before_the_features_are_described_or_without_a_live_agent(
    actors, teacher, dataset, live_agent
):
    coder = trained_coder(actors, teacher, dataset)
    with pytest.raises(ActionError, match="Describe the features first"):
        label_actions.do_label_features(coder, actors.member, live_agent)
    with pytest.raises(ActionError, match="from 1 to 200"):
        label_actions.do_label_features(coder, actors.member, live_agent, limit=0)
    live_agent = runtime_actions.do_undeploy_agent(live_agent)
    with pytest.raises(ActionError, match="is not deployed"):
        label_actions.do_label_features(coder, actors.member, live_agent)


def test_prompts_mark_the_firing_token_and_answers_are_read_strictly():
    context = {"tokens": ["The", " heart", " pumps"], "center": 1, "activations": [0.0, 2.0, 0.1], "value": 2.0}
    assert snippet(context) == "The[[ heart]] pumps" and snippet(context, mark=False) == "The heart pumps"
    prompt = explain_prompt([context], ["blood"])
    assert "[[ heart]]" in prompt and "blood" in prompt
    assert clean_label('"The feature detects: organs of the body"\nmore') == "organs of the body"
    assert clean_label("a\x00b") == "a\u2400b"  # PostgreSQL text and jsonb refuse NUL
    assert says_yes("Yes, it does") == 1.0 and says_yes("no") == 0.0 and says_yes("maybe yes") == 0.0
