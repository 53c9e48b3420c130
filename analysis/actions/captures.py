"""Starting activation captures: everything checked while the person waits, then a job.

Checked here, before anything is kept: the teacher is ready, of an architecture analysis supports, and has a
Hugging Face (torch) copy; the dataset is ready; the hook-point patterns select MLPs the teacher has; the
budget is sensible; the estimated disk use fits the free disk of the data directory.
"""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from analysis.models import Capture, CaptureShard, CaptureStatus, CoderRun, CoderRunStatus
from projects import blobs
from projects.actions import ActionError, do_enqueue_job
from projects.actions import conversion as conversion_actions
from projects.models import Dataset, Job, JobStatus, LanguageModel, ModelStatus

CAPTURE_JOB = "analysis.capture"
DEFAULT_HOOKPOINTS = "model.layers.*.mlp"
DTYPES = ("float16", "bfloat16")
#: Free disk kept back beyond a capture's estimate (the database, uploads, other jobs).
DISK_RESERVE_BYTES = 1024**3


def captures_dir() -> Path:
    """Where captures are written while they run (each in a folder named after its id)."""
    return Path(settings.DATA_DIR) / "analysis" / "captures"


def capture_dir(capture: Capture) -> Path:
    return captures_dir() / str(capture.pk)


def layer_names(n_layers: int) -> list[str]:
    """The MLP module names of a llama-family model with ``n_layers`` decoder blocks."""
    return [f"model.layers.{i}.mlp" for i in range(n_layers)]


def select_layers(patterns: list[str], n_layers: int) -> list[int]:
    """The layers whose MLP module name matches one of ``patterns``, or ActionError saying what exists."""
    names = layer_names(n_layers)
    chosen: set[int] = set()
    for pattern in patterns:
        matched = [i for i, name in enumerate(names) if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ActionError(
                f"“{pattern}” matches no MLP of this teacher; its MLPs are model.layers.0.mlp … "
                f"model.layers.{n_layers - 1}.mlp (patterns like model.layers.*.mlp or model.layers.1?.mlp).",
                field="hookpoints",
            )
        chosen.update(matched)
    return sorted(chosen)


def parse_patterns(text: str | list[str]) -> list[str]:
    items = text if isinstance(text, list) else text.replace(",", " ").split()
    patterns = [p.strip() for p in items if p.strip()]
    if not patterns:
        raise ActionError("Name the MLPs to capture, e.g. model.layers.*.mlp.", field="hookpoints")
    return patterns


def estimate_bytes(n_tokens: int, n_layers: int, d_model: int) -> int:
    """Disk a capture takes: MLP input and output per layer (2 bytes each value), plus token ids, documents and
    positions (8 bytes each per token)."""
    return n_tokens * (n_layers * 2 * d_model * 2 + 3 * 8)


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def free_disk_bytes() -> int:
    folder = captures_dir()
    probe = folder
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def plan(teacher: LanguageModel, patterns: list[str], token_budget: int) -> dict:
    """What a capture of ``teacher`` would take: layers, width, estimated bytes, free disk."""
    n_layers = int(teacher.metadata.get("block_count") or 0)
    d_model = int(teacher.metadata.get("embedding_length") or 0)
    if not n_layers or not d_model:
        raise ActionError(f"{teacher.name} does not declare its layers and width; it cannot be captured.")
    layers = select_layers(patterns, n_layers)
    estimated = estimate_bytes(token_budget, len(layers), d_model)
    return {"layers": layers, "d_model": d_model, "estimated_bytes": estimated, "free_bytes": free_disk_bytes()}


def do_start_capture(
    teacher: LanguageModel,
    dataset: Dataset,
    user: User,
    *,
    hookpoints: str | list[str] = DEFAULT_HOOKPOINTS,
    token_budget: int = 65_536,
    seq_len: int = 256,
    batch_size: int = 8,
    split: str = "train",
    dtype: str = "float16",
    tokens_per_shard: int = 8192,
) -> Capture:
    """Create a capture of ``teacher`` over ``dataset``'s ``split`` and enqueue its job."""
    if teacher.organization_id != dataset.organization_id:  # pragma: no cover - callers scope both
        raise ActionError("The teacher and the dataset belong to different organisations.", code="not_found")
    if teacher.status != ModelStatus.READY:
        raise ActionError(f"{teacher.name} is not ready ({teacher.status}).", field="teacher", code="conflict")
    if not teacher.can("analysis"):
        reason = (teacher.capabilities.get("reasons") or {}).get("analysis", "")
        raise ActionError(f"{teacher.name} cannot be analysed yet: {reason}", field="teacher")
    if dataset.status != "ready":
        raise ActionError(f"The dataset {dataset.name} is not ready ({dataset.status}).", field="dataset")
    if split not in ("train", "eval"):
        raise ActionError("The split is “train” or “eval”.", field="split")
    if dtype not in DTYPES:
        raise ActionError(f"Store activations as {' or '.join(DTYPES)}.", field="dtype")
    for name, value, low, high in (
        ("token_budget", token_budget, 1, 1 << 31),
        ("seq_len", seq_len, 2, 32_768),
        ("batch_size", batch_size, 1, 4096),
        ("tokens_per_shard", tokens_per_shard, 256, 1 << 24),
    ):
        if not isinstance(value, int) or not low <= value <= high:
            raise ActionError(f"{name.replace('_', ' ')} must be a whole number from {low:,} to {high:,}.", field=name)
    torch_model = conversion_actions.torch_copy(teacher, user)
    patterns = parse_patterns(hookpoints)
    planned = plan(teacher, patterns, token_budget)
    if planned["estimated_bytes"] + DISK_RESERVE_BYTES > planned["free_bytes"]:
        raise ActionError(
            f"This capture needs about {format_bytes(planned['estimated_bytes'])} of disk "
            f"({len(planned['layers'])} layers × {token_budget:,} tokens × width {planned['d_model']}); "
            f"{format_bytes(planned['free_bytes'])} is free. Capture fewer layers or tokens, or free disk — or "
            "capture a few thousand tokens to hold out and train from the teacher's forward pass (Train from, on "
            "the capture's page), which writes no shards.",
            field="token_budget",
        )
    with transaction.atomic():
        capture = Capture.objects.create(
            organization=teacher.organization,
            project=teacher.project,
            teacher=teacher,
            torch_model=torch_model,
            dataset=dataset,
            split=split,
            hookpoints=patterns,
            layers=planned["layers"],
            token_budget=token_budget,
            seq_len=seq_len,
            batch_size=batch_size,
            tokens_per_shard=tokens_per_shard,
            dtype=dtype,
            d_model=planned["d_model"],
            estimated_bytes=planned["estimated_bytes"],
            status=CaptureStatus.QUEUED,
            created_by=user,
        )
        job = do_enqueue_job(teacher.organization, CAPTURE_JOB, project=teacher.project, user=user,
                             params={"capture": capture.pk})  # fmt: skip
        Capture.objects.filter(pk=capture.pk).update(job=job)
        capture.job = job
    return capture


#: Jobs that read a capture's shards (training reads them for its metrics too, describing for the contexts).
SHARD_READING_JOBS = ("analysis.train_coders", "analysis.describe_features")


def do_release_shards(capture: Capture, user: User) -> int:
    """Free the disk of a complete capture's shards; returns the bytes freed.

    What was learnt from them stays: the capture's row and manifest, its training runs, coders, metrics and
    features (contexts included). Training or describing again needs a new capture. Refused while a job that
    reads the shards is queued or running. Blobs another row still uses (an identical shard) are kept.
    """
    if not capture.is_complete:
        raise ActionError(f"Capture #{capture.pk} is not complete ({capture.status}); nothing to release.",
                          code="conflict")  # fmt: skip
    if capture.shards_released_at is not None:
        raise ActionError(f"The shards of capture #{capture.pk} were already released.", code="conflict")
    active = (JobStatus.QUEUED, JobStatus.RUNNING)
    busy_runs = CoderRun.objects.filter(capture=capture).exclude(
        status__in=[CoderRunStatus.COMPLETE, CoderRunStatus.FAILED]
    )
    coder_ids = set(capture.coder_runs.values_list("coders__pk", flat=True)) - {None}
    busy_jobs = Job.objects.filter(organization=capture.organization, kind__in=SHARD_READING_JOBS, status__in=active)
    reading = any(job.params.get("coder") in coder_ids for job in busy_jobs)
    if busy_runs.exists() or reading:
        raise ActionError(
            f"A job is still reading capture #{capture.pk} (training or describing features); release its shards "
            "when it has finished.",
            code="conflict",
        )
    with transaction.atomic():
        locked = Capture.objects.select_for_update().get(pk=capture.pk)
        if locked.shards_released_at is not None:
            raise ActionError(f"The shards of capture #{capture.pk} were already released.", code="conflict")
        shards = CaptureShard.objects.filter(capture=capture, name__startswith="shard-").select_related("blob")
        shas = [s.blob_id for s in shards]
        shards.delete()
        locked.shards_released_at = timezone.now()
        locked.save(update_fields=["shards_released_at"])
        capture.shards_released_at = locked.shards_released_at
    _, freed = blobs.collect_garbage(only=shas)
    for folder in (capture_dir(capture), Path(settings.DATA_DIR) / "analysis" / "capture-folders" / str(capture.pk)):
        shutil.rmtree(folder, ignore_errors=True)
    return freed
