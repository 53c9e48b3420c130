"""Agents on a tiny real GGUF model (random weights), loaded by the real llama.cpp."""

from __future__ import annotations

import pytest

from runtime import actions, serving
from runtime.models import Agent
from tests.support.tiny_models import TinyLlamaConfig, write_gguf_llama


@pytest.fixture(autouse=True)
def fresh_model_cache(settings, tmp_path):
    """Each test starts with nothing loaded and its own saved-state folder."""
    settings.AGENT_STATE_DIR = tmp_path / "kv-states"
    serving.reset_model_cache()
    yield
    serving.reset_model_cache()


@pytest.fixture
def tiny_gguf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gguf")
    return write_gguf_llama(folder / "tiny-chat.gguf", TinyLlamaConfig(context_length=512))


@pytest.fixture
def chat_model(actors, tiny_gguf, transactional_db):
    from projects.actions.teachers import do_import_model_files

    return do_import_model_files(tiny_gguf, actors.project, actors.owner, name="tiny chat")


def make_agent(actors, model, *, name="Helper", deploy=True, **fields) -> Agent:
    fields.setdefault("context_length", 256)
    fields.setdefault("max_tokens", 24)
    fields.setdefault("temperature", 0.0)
    agent = actions.do_create_agent(actors.project, actors.owner, name=name, model=model, **fields)
    if deploy:
        actions.do_deploy_agent(agent)
        agent = actions.finish_deployment(actors.org.pk, agent.pk)  # synchronously, for the test
        assert agent.status == "live", agent.error
    return agent


@pytest.fixture
def live_agent(actors, chat_model):
    return make_agent(actors, chat_model)
