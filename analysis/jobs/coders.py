"""The training job: sparse coders for a capture's layers, trained side by side, then measured.

The capture's shards are laid out as a folder of links to their blobs; every ``(layer, kind)`` coder trains in
one pass over them (the engine), the loss curves reach the run's row every few seconds (the page draws them),
then each coder is measured on the held-out tokens — FVU, L0, dead fraction, and the KL and CE increase of the
teacher's next-token distribution when the coder replaces that layer's MLP — and stored as blobs
(``config.json`` + ``model.safetensors``). Nothing is shown as complete before every coder is stored.

A run whose source is the teacher's forward pass (for when the disk cannot hold a capture of the whole budget)
streams the capture's dataset split through the teacher after the capture's own tokens and trains on the
activations as they come (``train_sparse_coders_online``); the capture — written with the same sequence length
and packing, so the stream's first tokens are exactly its tokens — is then the held-out set.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analysis.actions.coders import TRAIN_JOB, released_message
from analysis.models import Capture, CaptureShard, Coder, CoderRun, CoderRunStatus, CoderSource
from projects import blobs
from projects.actions import ActionError
from projects.background import JobContext, JobKind, Refused, register
from projects.models import Job

#: Points kept per curve (older points are thinned, the newest kept).
CURVE_POINTS = 300
CURVE_WRITE_SECONDS = 2.0


def capture_folder(capture: Capture) -> Path:
    """The complete capture's files under their names (links to the blobs), as the engine reads them."""
    if capture.shards_released_at is not None:
        raise Refused(released_message(capture))
    files = [(s.name, s.blob) for s in CaptureShard.objects.filter(capture=capture).select_related("blob")]
    return blobs.materialize_folder(files, Path(settings.DATA_DIR) / "analysis" / "capture-folders" / str(capture.pk))


class _SplitDocuments:
    """The token ids of a dataset split, re-iterable (the forward-pass trainer reads the stream twice)."""

    def __init__(self, capture: Capture, tokenizer: Any) -> None:
        self.capture, self.tokenizer = capture, tokenizer

    def __iter__(self):
        from projects.torch_loading import dataset_token_ids

        return dataset_token_ids(self.capture.dataset, self.tokenizer, self.capture.split)


def _thin(points: list[list[float]]) -> list[list[float]]:
    return points if len(points) <= CURVE_POINTS else points[:-1:2] + [points[-1]]


@register
class TrainCoders(JobKind):
    """Train skip transcoders (and their baselines) on a capture and measure them on held-out tokens."""

    name = TRAIN_JOB
    title = "Train transcoders"
    queue = "gpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("run"), int):
            raise ValueError('A training job needs the id of its run: {"run": <id>}.')
        return {"run": params["run"]}

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        CoderRun.objects.for_org(job.organization).filter(pk=job.params.get("run")).exclude(
            status=CoderRunStatus.COMPLETE
        ).update(status=CoderRunStatus.FAILED, error=error or status, finished_at=timezone.now())

    @staticmethod
    def teacher(capture: Capture) -> tuple[Any, Any]:
        from projects.torch_loading import load_teacher

        try:
            model, tokenizer, _folder = load_teacher(capture.torch_model)
        except ActionError as exc:
            raise Refused(exc.message) from exc
        return model, tokenizer

    def run(self, job: Job, ctx: JobContext) -> dict:
        from analysis.engine.capture import CaptureConfig
        from analysis.engine.hookpoints import HookpointError, UnsupportedModelError
        from analysis.engine.metrics import reconstruction_metrics, replacement_metrics
        from analysis.engine.shards import CaptureReader
        from analysis.engine.training import TrainingConfig, train_sparse_coders, train_sparse_coders_online
        from projects.torch_loading import device

        run = (
            CoderRun.objects.for_org(job.organization)
            .select_related("capture__torch_model", "capture__dataset")
            .filter(pk=job.params.get("run"))
            .first()
        )
        if run is None:
            raise Refused("The training run was deleted before its job ran.")
        if run.status == CoderRunStatus.COMPLETE:
            return {"run": run.pk, "already": True}
        capture = run.capture
        CoderRun.objects.filter(pk=run.pk).update(status=CoderRunStatus.TRAINING, error="", job=job, curves={})
        reader = CaptureReader(capture_folder(capture))
        config = TrainingConfig(
            layers=list(run.layers),
            kinds=list(run.kinds),
            expansion=run.expansion,
            k=run.k,
            optimizer=run.optimizer,
            lr=run.lr,
            batch_size=run.batch_size,
            n_tokens=run.token_budget,
            held_out_tokens=run.held_out_tokens,
            device=str(device()),
        )
        curves: dict[str, list[list[float]]] = {}
        last_write = [0.0]

        def on_step(layer: int, kind: str, tokens: int, fvu: float, **_: Any) -> None:
            key = f"{layer}:{kind}"
            curves[key] = _thin([*curves.get(key, []), [tokens, round(float(fvu), 5)]])
            if time.monotonic() - last_write[0] > CURVE_WRITE_SECONDS:
                last_write[0] = time.monotonic()
                CoderRun.objects.filter(pk=run.pk).update(curves=curves)

        def progress(done: int, total: int, tokens_per_second: float = 0.0, **_: Any) -> None:
            ctx.progress(
                0.8 * done / max(total, 1), f"{done:,} of {total:,} tokens · {tokens_per_second:,.0f} tokens/s"
            )

        model = None
        try:
            if run.source == CoderSource.FORWARD:
                model, tokenizer = self.teacher(capture)
                hookpoints = reader.manifest.get("hookpoints") or {}
                if any(str(layer) not in hookpoints for layer in run.layers):
                    raise Refused(f"Capture #{capture.pk}'s manifest names no hook point for some of {run.layers}.")
                capture_config = CaptureConfig(
                    n_tokens=capture.n_tokens + (run.token_budget or 0),
                    hookpoints=[hookpoints[str(layer)] for layer in run.layers],
                    seq_len=capture.seq_len,
                    batch_size=capture.batch_size,
                    tokens_per_shard=capture.tokens_per_shard,
                    dtype=capture.dtype,
                    pad_token_id=0,
                )
                ctx.progress(0.0, "Training from the teacher's forward pass", force=True)
                result = train_sparse_coders_online(
                    model,
                    _SplitDocuments(capture, tokenizer),
                    capture_config,
                    config,
                    progress=progress,
                    on_step=on_step,
                )
            else:
                result = train_sparse_coders(reader, config, progress=progress, on_step=on_step)
        except (ValueError, HookpointError, UnsupportedModelError) as exc:
            raise Refused(str(exc)) from exc
        if result.tokens == 0:
            raise Refused(
                f"The {capture.split or 'whole'} split of {capture.dataset.name} holds no tokens after the capture's "
                f"{capture.n_tokens:,}: nothing to train on. Capture fewer tokens or use a larger dataset."
            )
        CoderRun.objects.filter(pk=run.pk).update(
            curves=curves,
            status=CoderRunStatus.EVALUATING,
            tokens_trained=result.tokens,
            tokens_per_second=result.tokens_per_second,
        )
        start, stop = result.held_out_range
        ctx.progress(0.8, f"Measuring {len(result.coders)} coders on {stop - start:,} held-out tokens", force=True)
        reconstruction = {
            key: reconstruction_metrics(coder, reader, key[0], start, stop) for key, coder in result.coders.items()
        }
        if model is None:
            model, _tokenizer = self.teacher(capture)
        sequences = reader.sequences(start, stop)
        replaced = replacement_metrics(
            model,
            sequences,
            {f"{layer}:{kind}": {layer: coder} for (layer, kind), coder in result.coders.items()},
            progress=lambda done, total, **_: ctx.progress(0.8 + 0.15 * done / max(total, 1)),
        )
        ctx.progress(0.96, "Storing the coders", force=True)
        rows = []
        with tempfile.TemporaryDirectory(dir=settings.DATA_DIR) as tmp:
            for (layer, kind), coder in result.coders.items():
                folder = coder.save(Path(tmp) / f"{layer}-{kind}", extra={"run": run.pk, "capture": capture.pk})
                metrics, effect = reconstruction[layer, kind], replaced[f"{layer}:{kind}"]
                rows.append(
                    Coder(
                        run=run,
                        layer=layer,
                        kind=kind,
                        d_sae=coder.d_sae,
                        config_blob=blobs.store_path(folder / "config.json", move=True),
                        weights_blob=blobs.store_path(folder / "model.safetensors", move=True),
                        fvu=metrics.fvu,
                        l0=metrics.l0,
                        dead_fraction=metrics.dead_fraction,
                        kl=effect.kl,
                        ce_increase=effect.ce_increase,
                    )
                )
            shutil.rmtree(tmp, ignore_errors=True)
        clean = next(iter(replaced.values())).clean_ce if replaced else None
        with transaction.atomic():
            Coder.objects.filter(run=run).delete()
            Coder.objects.bulk_create(rows)
            CoderRun.objects.filter(pk=run.pk).update(
                status=CoderRunStatus.COMPLETE, clean_ce=clean, finished_at=timezone.now()
            )
        ctx.progress(1.0, f"{len(rows)} coders trained on {result.tokens:,} tokens each", force=True)
        return {"run": run.pk, "coders": len(rows), "tokens": result.tokens}
