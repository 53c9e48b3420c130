"""Labelling features by asking an agent (auto-interpretability), each label scored on held-out contexts."""

from __future__ import annotations

from django.contrib.auth.models import User

from analysis.models import Coder, Feature
from projects.actions import ActionError, do_enqueue_job
from projects.models import Job
from runtime.models import Agent, AgentStatus, Backend

LABEL_JOB = "analysis.label_features"
MAX_FEATURES = 200


def do_label_features(coder: Coder, user: User, agent: Agent, *, limit: int = 20) -> Job:
    """Ask ``agent`` to describe the ``limit`` most frequent described features of ``coder``, and score each label."""
    if agent.organization_id != coder.run.organization_id:  # pragma: no cover - callers scope both
        raise ActionError("No such agent in this organisation.", field="agent", code="not_found")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_FEATURES:
        raise ActionError(f"Label from 1 to {MAX_FEATURES} features at a time.", field="limit")
    if agent.backend == Backend.LLAMA_CPP and agent.status != AgentStatus.LIVE:
        raise ActionError(f"{agent.name} is not deployed ({agent.get_status_display()}); deploy it first.",
                          field="agent", code="conflict")  # fmt: skip
    if not Feature.objects.filter(coder=coder, frequency__gt=0).exclude(contexts=[]).exists():
        raise ActionError("Describe the features first: the agent reads their top contexts.", code="conflict")
    capture = coder.run.capture
    return do_enqueue_job(capture.organization, LABEL_JOB, project=capture.project, user=user,
                          params={"coder": coder.pk, "agent": agent.pk, "limit": limit})  # fmt: skip
