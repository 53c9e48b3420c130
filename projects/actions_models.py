"""Models in a project: creating them from uploads or server files, deleting, comparing.

Creation validates the headers at once (fast: no weights are read), so a bad file is
refused with its reason before anything is kept; the tensor inventory, which reads every
byte to hash it, runs as a job (`projects.inventory_model`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction
from tqdm import tqdm

from projects import blobs
from projects.actions import ActionError, do_delete_owning_blobs, do_enqueue_job
from projects.engine.model_formats import ModelFormatError, ModelInfo, inspect_model
from projects.jobs_base import execute
from projects.models import Blob, Job, LanguageModel, ModelFile, ModelRole, ModelStatus, Project, Upload, UploadStatus


def model_folder(model: LanguageModel) -> Path:
    """The model's files laid out under their names (symbolic links to the blobs)."""
    folder = settings.DATA_DIR / "model-folders" / str(model.pk)
    files = [(f.path, f.blob) for f in model.files.select_related("blob")]
    return blobs.materialize_folder(files, folder)


def model_path(model: LanguageModel) -> Path:
    """What the engines open: the GGUF file itself, or the Hugging Face folder."""
    folder = model_folder(model)
    if model.format == "gguf":
        return next(folder.rglob("*.gguf"))
    return folder


def inspect_files(files: list[tuple[str, Blob]], label: str) -> ModelInfo:
    """Read the headers of a would-be model (nothing kept). Raises ModelFormatError."""
    if len(files) == 1 and not files[0][0].endswith((".safetensors", ".json")):
        path, blob = files[0]
        return inspect_model(blobs.local_path(blob), original_name=Path(path).name)
    with tempfile.TemporaryDirectory(prefix="inspect-", dir=blobs.uploads_dir()) as tmp:
        folder = blobs.materialize_folder(files, Path(tmp) / "model")
        return inspect_model(folder, original_name=label)


def _header_fields(info: ModelInfo) -> dict:
    return {
        "format": info.format,
        "architecture": info.architecture or info.model_type or "",
        "file_type": info.file_type or "",
        "parameter_count": info.n_params,
        "size_bytes": info.file_size,
        "capabilities": info.capabilities.as_dict(),
        "warnings": list(info.warnings),
        "metadata": {
            key: getattr(info, key)
            for key in ("name", "model_type", "block_count", "embedding_length", "head_count", "head_count_kv",
                        "feed_forward_length", "context_length", "vocab_size", "chat_template", "gguf_version")
        } | {"quant_types": info.quant_types, "tensor_count": len(info.tensors)},
    }


def do_create_model(
    project: Project, user, *, name: str, files: list[tuple[str, Blob]], role: str = ModelRole.TEACHER,
    derived_from: LanguageModel | None = None, enqueue: bool = True,
) -> LanguageModel:
    """Check the files' headers and create the model; its tensor inventory runs as a job.

    Raises ActionError with the format problem (nothing is created) when they are unusable.
    """
    if not files:
        raise ActionError("Choose the model's files: one GGUF file, or a Hugging Face folder.", field="uploads")
    if project.is_archived:
        raise ActionError(f"Project {project} is archived; unarchive it to add models.", field="project")
    name = (name or "").strip() or Path(files[0][0]).stem
    try:
        info = inspect_files(files, name)
    except ModelFormatError as exc:
        raise ActionError(str(exc), field="uploads")
    with transaction.atomic():
        model = LanguageModel.objects.create(
            organization=project.organization, project=project, name=name[:200], role=role, created_by=user,
            derived_from=derived_from, status=ModelStatus.IMPORTING, **_header_fields(info),
        )
        kept = _kept_files(info, files)
        ModelFile.objects.bulk_create([ModelFile(model=model, path=path, blob=blob) for path, blob in kept])
        do_enqueue_job(project.organization, "projects.inventory_model", user=user, project=project,
                       params={"model": model.pk}, enqueue=enqueue)
    return model


def _kept_files(info: ModelInfo, files: list[tuple[str, Blob]]) -> list[tuple[str, Blob]]:
    """The files the model consists of: a lone GGUF under its own name, or the whole folder."""
    if info.format == "gguf" and len(files) == 1:
        path, blob = files[0]
        return [(Path(path).name if Path(path).suffix.lower() == ".gguf" else f"{Path(path).stem}.gguf", blob)]
    return files


def do_create_model_from_uploads(project: Project, user, *, name: str, uploads: list[Upload]) -> LanguageModel:
    """Create a model from finished uploads; the uploads are consumed either way.

    When the files are refused, the uploads and their blobs are deleted: nothing is kept.
    """
    for upload in uploads:
        if upload.project_id != project.pk:
            raise ActionError("An upload belongs to another project.", field="uploads", code="not_found")
        if upload.status != UploadStatus.COMPLETE or upload.blob_id is None:
            raise ActionError(f"{upload.filename} has not finished uploading ({upload.received} of {upload.size} bytes).", field="uploads")
    files = [((u.relative_path or u.filename), u.blob) for u in uploads]
    shas = [u.blob_id for u in uploads]
    try:
        model = do_create_model(project, user, name=name, files=files)
    except ActionError:
        _consume(uploads, shas)
        raise
    _consume(uploads, shas)
    return model


def _consume(uploads: list[Upload], shas: list[str]) -> None:
    Upload.objects.filter(pk__in=[u.pk for u in uploads]).delete()
    blobs.collect_garbage(only=shas)


def do_delete_model(model: LanguageModel) -> None:
    """Delete a model unless something depends on it; then free its unreferenced blobs."""
    model_id = model.pk
    do_delete_owning_blobs(model, list(model.files.values_list("blob_id", flat=True)))
    shutil.rmtree(settings.DATA_DIR / "model-folders" / str(model_id), ignore_errors=True)


#: Files of a Hugging Face folder worth keeping (weights, index, config, tokenizer, templates).
FOLDER_SUFFIXES = {".safetensors", ".json", ".model", ".txt", ".jinja", ".gguf"}


def do_import_model_files(path: Path, project: Project, user, *, name: str = "", stdout=None, inline_inventory: bool = True) -> LanguageModel:
    """Import files already on this machine: store them as blobs, then :func:`do_create_model`.

    Used by `manage.py import_model` and the demo bootstrap. With ``inline_inventory`` the
    inventory job runs in this process (progress on ``stdout``) instead of on a worker.
    """
    path = path.expanduser().resolve()
    if not path.exists():
        raise ActionError(f"{path} does not exist.", field="path")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)
        if not files:
            raise ActionError(f"{path} holds no model files (.gguf, .safetensors, config.json).", field="path")
    else:
        files = [path]
    stored = []
    for file in files:
        relative = file.relative_to(path).as_posix() if path.is_dir() else file.name
        with tqdm(total=file.stat().st_size, unit="B", unit_scale=True, desc=f"hashing {relative}", file=stdout or sys.stderr,
                  disable=stdout is None) as bar:
            sha = blobs.sha256_of(file, progress=lambda done, total: bar.update(done - bar.n))
        stored.append((relative, blobs.store_path(file, sha256=sha)))
    try:
        model = do_create_model(project, user, name=name or path.stem, files=stored, enqueue=not inline_inventory)
    except ActionError:
        blobs.collect_garbage(only=[blob.sha256 for _, blob in stored])
        raise
    if inline_inventory:
        # What a worker would run, here; its progress lines go to the log (the terminal).
        execute(Job.objects.get(kind="projects.inventory_model", params__model=model.pk).pk)
        model.refresh_from_db()
    return model
