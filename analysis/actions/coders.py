"""Starting sparse-coder training runs on a complete capture."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from analysis.models import Capture, CoderKind, CoderOptimizer, CoderRun, CoderRunStatus, CoderSource
from projects.actions import ActionError, do_enqueue_job

TRAIN_JOB = "analysis.train_coders"
KINDS = [k.value for k in CoderKind]


def released_message(capture: Capture) -> str:
    """What to tell a person who asks for work that needs the shards of a capture whose shards were released."""
    return (
        f"The shards of capture #{capture.pk} were released on {capture.shards_released_at:%Y-%m-%d %H:%M} UTC to "
        "free disk; its coders and features stay. Capture again (same teacher, dataset and layers) to train or "
        "describe from it."
    )


def do_start_coder_run(
    capture: Capture,
    user: User,
    *,
    layers: list[int] | None = None,
    kinds: list[str] | None = None,
    expansion: int = 8,
    k: int = 32,
    optimizer: str = CoderOptimizer.SIGNUM,
    lr: float | None = None,
    batch_size: int = 1024,
    token_budget: int | None = None,
    held_out_tokens: int | None = None,
    source: str = CoderSource.SHARDS,
) -> CoderRun:
    """Create a run training ``kinds`` coders for ``layers`` of ``capture`` and enqueue its job.

    ``held_out_tokens`` defaults to a tenth of the capture, at most 20,000 tokens; ``kinds`` to the skip
    transcoder and both baselines, so that the comparison is there from the first run.

    ``source="forward"`` trains from the teacher's forward pass instead of the shards (for when the disk cannot
    hold a capture of the whole budget): the job streams the capture's dataset split through the teacher after
    the capture's own tokens, for ``token_budget`` tokens (required), and the whole capture is the held-out set.
    """
    if capture.status != "complete":
        raise ActionError(f"Capture #{capture.pk} is not complete ({capture.status}).", code="conflict")
    if capture.shards_released_at is not None:
        raise ActionError(released_message(capture), code="conflict")
    layers = sorted(set(capture.layers if layers is None else layers))
    missing = sorted(set(layers) - set(capture.layers))
    if not layers or missing:
        raise ActionError(
            f"Capture #{capture.pk} holds layers {capture.layers}; it has no layer {missing or '(none chosen)'}.",
            field="layers",
        )
    kinds = list(dict.fromkeys(kinds or KINDS))
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise ActionError(f"Coder kinds are {', '.join(KINDS)}; not {', '.join(unknown)}.", field="kinds")
    for name, value, low, high in (
        ("expansion", expansion, 1, 256),
        ("k", k, 1, 4096),
        ("batch_size", batch_size, 1, 1 << 20),
    ):
        if not isinstance(value, int) or not low <= value <= high:
            raise ActionError(f"{name.replace('_', ' ')} must be a whole number from {low} to {high:,}.", field=name)
    if k > expansion * capture.d_model:
        raise ActionError(f"k ({k}) cannot exceed the number of latents ({expansion * capture.d_model}).", field="k")
    if optimizer not in CoderOptimizer.values:
        raise ActionError(f"The optimiser is one of {', '.join(CoderOptimizer.values)}.", field="optimizer")
    if lr is not None and not 0 < lr < 1:
        raise ActionError("The learning rate must be between 0 and 1 (blank: scaled to the width).", field="lr")
    if source not in CoderSource.values:
        raise ActionError(f"Training reads from one of {', '.join(CoderSource.values)}.", field="source")
    if source == CoderSource.FORWARD:
        if token_budget is None:
            raise ActionError(
                "Training from the forward pass needs a token budget: how many tokens of the split, after the "
                f"capture's {capture.n_tokens:,}, to train each coder on.",
                field="token_budget",
            )
        if held_out_tokens not in (None, capture.n_tokens):
            raise ActionError(
                f"Training from the forward pass holds out the whole capture ({capture.n_tokens:,} tokens); "
                "leave the held-out tokens blank.",
                field="held_out_tokens",
            )
        held_out_tokens = capture.n_tokens
    elif held_out_tokens is None:
        held_out_tokens = min(capture.n_tokens // 10, 20_000)
    if source == CoderSource.SHARDS and not 0 <= held_out_tokens < capture.n_tokens - batch_size:
        raise ActionError(
            f"Capture #{capture.pk} has {capture.n_tokens:,} tokens: holding out {held_out_tokens:,} must leave at "
            f"least one batch of {batch_size:,} to train on. Capture more tokens or use a smaller batch.",
            field="held_out_tokens",
        )
    if token_budget is not None and token_budget < batch_size:
        raise ActionError(f"Train on at least one batch ({batch_size:,} tokens).", field="token_budget")
    with transaction.atomic():
        run = CoderRun.objects.create(
            organization=capture.organization,
            capture=capture,
            source=source,
            layers=layers,
            kinds=kinds,
            expansion=expansion,
            k=k,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            token_budget=token_budget,
            held_out_tokens=held_out_tokens,
            status=CoderRunStatus.QUEUED,
            created_by=user,
        )
        job = do_enqueue_job(
            capture.organization, TRAIN_JOB, project=capture.project, user=user, params={"run": run.pk}
        )
        CoderRun.objects.filter(pk=run.pk).update(job=job)
        run.job = job
    return run
