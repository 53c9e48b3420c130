"""The capture job: stream a dataset split through the teacher and record its MLP inputs and outputs.

Shards are written into ``DATA_DIR/analysis/captures/<id>/`` as the run goes; a retried job (after a failure,
a cancel or a killed worker) resumes there from the last complete shard. When the engine has written every
shard and the manifest, each file becomes a blob with a :class:`~analysis.models.CaptureShard` row, the work
folder is removed, and only then is the capture ``complete``.
"""

from __future__ import annotations

import shutil
from typing import Any

from django.db import transaction
from django.utils import timezone

from analysis.actions.captures import CAPTURE_JOB, capture_dir
from analysis.models import Capture, CaptureShard, CaptureStatus
from projects import blobs
from projects.actions import ActionError
from projects.background import JobContext, JobKind, Refused, register
from projects.models import Job


def _capture(job: Job) -> Capture:
    capture = Capture.objects.for_org(job.organization).select_related("teacher", "torch_model", "dataset")
    found = capture.filter(pk=job.params.get("capture")).first()
    if found is None:
        raise Refused("The capture was deleted before its job ran.")
    return found


@register
class CaptureActivations(JobKind):
    """Record a teacher's MLP activations over a dataset split into safetensors shards."""

    name = CAPTURE_JOB
    title = "Capture activations"
    queue = "gpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("capture"), int):
            raise ValueError('A capture job needs the id of its capture: {"capture": <id>}.')
        return {"capture": params["capture"]}

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        # The work folder stays: retrying the job resumes from its last complete shard.
        Capture.objects.for_org(job.organization).filter(pk=job.params.get("capture")).exclude(
            status=CaptureStatus.COMPLETE
        ).update(status=CaptureStatus.FAILED, error=error or status, finished_at=timezone.now())

    def run(self, job: Job, ctx: JobContext) -> dict:
        from analysis.engine.capture import CaptureConfig, EmptyDatasetError, capture_mlp_activations
        from analysis.engine.hookpoints import HookpointError, UnsupportedModelError
        from analysis.engine.shards import InsufficientDiskError
        from projects.torch_loading import dataset_token_ids, load_teacher

        capture = _capture(job)
        if capture.status == CaptureStatus.COMPLETE:
            return {"capture": capture.pk, "already": True}
        Capture.objects.filter(pk=capture.pk).update(status=CaptureStatus.CAPTURING, error="", job=job)
        ctx.progress(0.0, f"Loading {capture.torch_model.name} in torch", force=True)
        try:
            model, tokenizer, _folder = load_teacher(capture.torch_model)
        except ActionError as exc:
            raise Refused(exc.message) from exc
        config = CaptureConfig(
            n_tokens=capture.token_budget,
            hookpoints=list(capture.hookpoints),
            seq_len=capture.seq_len,
            batch_size=capture.batch_size,
            tokens_per_shard=capture.tokens_per_shard,
            dtype=capture.dtype,
            pad_token_id=0,
        )
        directory = capture_dir(capture)
        directory.mkdir(parents=True, exist_ok=True)
        device = next(model.parameters()).device
        Capture.objects.filter(pk=capture.pk).update(device=str(device))

        def progress(done: int, total: int, tokens_per_second: float = 0.0, shards: int = 0, **_: Any) -> None:
            ctx.progress(
                0.97 * done / max(total, 1),
                f"{done:,} of {total:,} tokens · {tokens_per_second:,.0f} tokens/s · {shards} shards on disk",
            )

        documents = dataset_token_ids(capture.dataset, tokenizer, capture.split)
        try:
            result = capture_mlp_activations(
                model,
                documents,
                directory,
                config,
                progress=progress,
                spec={
                    "capture": capture.pk,
                    "model": capture.torch_model_id,
                    "dataset": capture.dataset_id,
                    "split": capture.split,
                },  # fmt: skip
                device=device,
            )
        except (HookpointError, UnsupportedModelError, EmptyDatasetError, InsufficientDiskError) as exc:
            raise Refused(str(exc)) from exc
        if result.resumed_from_tokens:
            ctx.log(f"resumed from {result.resumed_from_tokens:,} tokens already captured")
        ctx.progress(0.98, f"Storing {result.n_shards} shards", force=True)
        stored = [(path.name, blobs.store_path(path, move=True)) for path in sorted(directory.iterdir())]
        with transaction.atomic():
            CaptureShard.objects.filter(capture=capture).delete()
            CaptureShard.objects.bulk_create([CaptureShard(capture=capture, name=n, blob=b) for n, b in stored])
            Capture.objects.filter(pk=capture.pk).update(
                status=CaptureStatus.COMPLETE,
                n_tokens=result.n_tokens,
                n_shards=result.n_shards,
                bytes=result.bytes,
                tokens_per_second=result.tokens_per_second,
                finished_at=timezone.now(),
            )
        shutil.rmtree(directory, ignore_errors=True)
        ctx.progress(
            1.0, f"{result.n_tokens:,} tokens captured at {result.tokens_per_second:,.0f} tokens/s", force=True
        )
        return {"capture": capture.pk, "tokens": result.n_tokens, "shards": result.n_shards, "bytes": result.bytes}
