"""Describing a coder's features, and the test box (which features fire on a text): both run as jobs."""

from __future__ import annotations

from django.contrib.auth.models import User

from analysis.actions.coders import released_message
from analysis.models import Coder
from projects.actions import ActionError, do_enqueue_job
from projects.models import Job

DESCRIBE_JOB = "analysis.describe_features"
TEST_BOX_JOB = "analysis.test_box"
TEST_BOX_MAX_CHARS = 2000


def do_describe_features(coder: Coder, user: User) -> Job:
    """Compute every feature's statistics, top contexts, histogram, logit lens, label and neuron links."""
    if coder.run.status != "complete":
        raise ActionError("The coder's training run has not finished.", code="conflict")
    capture = coder.run.capture
    if capture.shards_released_at is not None:
        raise ActionError(released_message(capture), code="conflict")
    return do_enqueue_job(capture.organization, DESCRIBE_JOB, project=capture.project, user=user,
                          params={"coder": coder.pk})  # fmt: skip


def do_test_text(coder: Coder, user: User, text: str) -> Job:
    """Run the teacher and this coder on ``text`` in a worker; the job's result lists the features per token."""
    text = (text or "").strip()
    if not text:
        raise ActionError("Type a text to see which features fire on it.", field="text")
    if len(text) > TEST_BOX_MAX_CHARS:
        raise ActionError(f"Test at most {TEST_BOX_MAX_CHARS:,} characters at a time.", field="text")
    capture = coder.run.capture
    return do_enqueue_job(capture.organization, TEST_BOX_JOB, project=capture.project, user=user,
                          params={"coder": coder.pk, "text": text})  # fmt: skip
