"""Agent rules and deployment through the real llama.cpp."""

from __future__ import annotations

import os

import pytest

from projects.actions import ActionError
from projects.blobs import local_path
from runtime import actions, serving
from runtime.models import AgentStatus
from tests.runtime.conftest import make_agent


def test_deploying_loads_the_model_once_and_undeploying_unloads_it(actors, chat_model):
    agent = make_agent(actors, chat_model)
    assert agent.status == AgentStatus.LIVE and agent.deployed_at is not None
    facts = agent.deployment
    assert facts["backend"] == "llama_cpp" and facts["gpu_layers"] == 0 and facts["load_s"] >= 0
    assert facts["estimated_bytes"] > chat_model.size_bytes
    assert serving.is_loaded(agent) and serving.model_cache().loads == 1
    second = make_agent(actors, chat_model, name="Same model")  # same model and settings: no second load
    assert serving.model_cache().loads == 1
    actions.do_undeploy_agent(agent)
    assert serving.is_loaded(second)  # still used by a live agent
    actions.do_undeploy_agent(second)
    assert not serving.is_loaded(second)


def test_a_model_file_that_fails_to_load_leaves_the_agent_failed_with_the_reason(actors, chat_model):
    blob_file = local_path(chat_model.files.get().blob)
    os.chmod(blob_file, 0o644)
    with open(blob_file, "r+b") as handle:  # the stored file was damaged after the import
        handle.truncate(os.path.getsize(blob_file) // 2)
    agent = make_agent(actors, chat_model, deploy=False)
    actions.do_deploy_agent(agent)
    agent = actions.finish_deployment(actors.org.pk, agent.pk)
    assert agent.status == AgentStatus.FAILED and not agent.is_live
    assert "could not load" in agent.error and "re-upload" in agent.error


def test_agent_rules(actors, chat_model, settings):
    with pytest.raises(ActionError, match="Pick the GGUF model"):
        actions.do_create_agent(actors.project, actors.owner, name="No model")
    with pytest.raises(ActionError, match="trained for 512 tokens"):
        make_agent(actors, chat_model, name="Too long", context_length=4096, deploy=False)
    with pytest.raises(ActionError, match="URL"):
        actions.do_create_agent(actors.project, actors.owner, name="Remote", backend="remote")
    other_model_agent = make_agent(actors, chat_model, name="Mine", deploy=False)
    with pytest.raises(ActionError, match="already exists"):
        make_agent(actors, chat_model, name="Mine", deploy=False)
    # Editing what the model loads with redeploys a live agent; editing the prompt does not.
    live = make_agent(actors, chat_model, name="Live one")
    actions.do_update_agent(live, system_prompt="Be kind.")
    assert live.status == AgentStatus.LIVE
    actions.do_update_agent(live, context_length=128)
    assert live.status == AgentStatus.DEPLOYING
    assert other_model_agent.status == AgentStatus.UNDEPLOYED


def test_another_organisations_model_cannot_be_used(actors, chat_model):
    with pytest.raises(ActionError, match="No such model"):
        actions.do_create_agent(actors.other_project, actors.outsider, name="Borrowed", model=chat_model)


def test_an_agent_can_wait_for_its_model_but_deploys_only_when_it_is_ready(actors, chat_model):
    from projects.models import LanguageModel

    LanguageModel.objects.for_org(actors.org).filter(pk=chat_model.pk).update(status="importing")
    chat_model.refresh_from_db()
    agent = make_agent(actors, chat_model, name="Early", deploy=False)
    with pytest.raises(ActionError, match="still being imported"):
        actions.do_deploy_agent(agent)
    assert agent.status == AgentStatus.UNDEPLOYED
    LanguageModel.objects.for_org(actors.org).filter(pk=chat_model.pk).update(status="failed", error="bad tensor")
    chat_model.refresh_from_db()
    with pytest.raises(ActionError, match="failed to import"):
        make_agent(actors, chat_model, name="Late", deploy=False)


def test_automatic_gpu_layers_are_decided_at_deployment_and_kept(actors, chat_model):
    agent = make_agent(actors, chat_model)
    assert agent.gpu_layers is None and agent.deployment["gpu_layers_auto"] is True
    # What the deployment decided is what every later request loads with (the same cached model).
    agent.deployment["gpu_layers"] = 3
    assert serving.load_spec(agent).n_gpu_layers == 3
    assert serving.load_spec(agent, decide_gpu=True).n_gpu_layers == 0  # a redeployment decides again: no GPU here
    agent.gpu_layers = 5  # a number set by hand always wins
    assert serving.load_spec(agent).n_gpu_layers == 5
