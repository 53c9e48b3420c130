"""Models in a project: creating them from uploads or server files, deleting, comparing.

Creation validates the headers at once (fast: no weights are read), so a bad file is
refused with its reason before anything is kept; the tensor inventory, which reads every
byte to hash it, runs as a job (`projects.inventory_model`).

A zipped model folder is checked from its listing at once (caps, paths, pickles,
config.json: nothing inflated), then unpacked member by member into blobs by the
`projects.unpack_model` job, which creates the model as any upload does. A zip refused at
either step leaves nothing: no model, no blob, no upload.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from tqdm import tqdm

from projects import blobs
from projects.actions.base import ActionError
from projects.actions.blobs import do_delete_owning_blobs
from projects.actions.jobs import do_enqueue_job
from projects.background import execute
from projects.engine import archives
from projects.engine.formats import (
    MODEL_FILE_SUFFIXES,
    ModelArchive,
    ModelFormatError,
    ModelInfo,
    TensorEntry,
    inspect_model,
    plan_model_archive,
)
from projects.models import Blob, Job, LanguageModel, ModelFile, ModelRole, ModelStatus, Project, Upload, UploadStatus

UNPACK_JOB = "projects.unpack_model"

#: Defaults of the caps on a zipped model (settings ``MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES`` and
#: ``MODEL_ARCHIVE_MAX_FILES``): teacher models are tens of GB; a model folder has tens of files.
MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES = 200 * 1024**3
MODEL_ARCHIVE_MAX_FILES = 10_000


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
            for key in (
                "name",
                "model_type",
                "block_count",
                "embedding_length",
                "head_count",
                "head_count_kv",
                "feed_forward_length",
                "context_length",
                "vocab_size",
                "chat_template",
                "gguf_version",
            )
        }
        | {"quant_types": info.quant_types, "tensor_count": len(info.tensors)},
    }


def do_create_model(
    project: Project,
    user: User,
    *,
    name: str,
    files: list[tuple[str, Blob]],
    role: str = ModelRole.TEACHER,
    derived_from: LanguageModel | None = None,
    enqueue: bool = True,
    notes: Sequence[str] = (),
) -> LanguageModel:
    """Check the files' headers and create the model; its tensor inventory runs as a job.

    ``notes`` are added to the model's warnings (what an import left out, say).
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
        raise ActionError(str(exc), field="uploads") from exc
    fields = _header_fields(info)
    fields["warnings"] += list(notes)
    with transaction.atomic():
        model = LanguageModel.objects.create(
            organization=project.organization,
            project=project,
            name=name[:200],
            role=role,
            created_by=user,
            derived_from=derived_from,
            status=ModelStatus.IMPORTING,
            **fields,
        )
        kept = _kept_files(info, files)
        ModelFile.objects.bulk_create([ModelFile(model=model, path=path, blob=blob) for path, blob in kept])
        do_enqueue_job(
            project.organization,
            "projects.inventory_model",
            user=user,
            project=project,
            params={"model": model.pk},
            enqueue=enqueue,
        )
    return model


def _kept_files(info: ModelInfo, files: list[tuple[str, Blob]]) -> list[tuple[str, Blob]]:
    """The files the model consists of: a lone GGUF under its own name, or the whole folder."""
    if info.format == "gguf" and len(files) == 1:
        path, blob = files[0]
        return [(Path(path).name if Path(path).suffix.lower() == ".gguf" else f"{Path(path).stem}.gguf", blob)]
    return files


def _check_uploads(project: Project, uploads: list[Upload]) -> None:
    for upload in uploads:
        if upload.project_id != project.pk:
            raise ActionError("An upload belongs to another project.", field="uploads", code="not_found")
        if upload.status != UploadStatus.COMPLETE or upload.blob_id is None:
            raise ActionError(
                f"{upload.filename} has not finished uploading ({upload.received} of {upload.size} bytes).",
                field="uploads",
            )


def do_create_model_from_uploads(project: Project, user: User, *, name: str, uploads: list[Upload]) -> LanguageModel:
    """Create a model from finished uploads; the uploads are consumed either way.

    When the files are refused, the uploads and their blobs are deleted: nothing is kept.
    A zipped model folder goes through :func:`do_start_model_from_archive` instead.
    """
    _check_uploads(project, uploads)
    files = [((u.relative_path or u.filename), u.blob) for u in uploads]
    shas = [u.blob_id for u in uploads]
    try:
        zipped = [u.filename for u in uploads if is_model_archive(u)]
        if zipped:
            raise ActionError(
                f"{zipped[0]} is a zip: a zipped model folder is uploaded on its own, not beside other files. "
                "Upload the zip alone, or the folder's files without it.",
                field="uploads",
            )
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


# --- Zipped model folders ------------------------------------------------------------------


def model_archive_limits() -> archives.ArchiveLimits:
    """The caps on a zipped model in force (settings ``MODEL_ARCHIVE_MAX_*``, defaults above)."""
    return archives.ArchiveLimits(
        max_uncompressed_bytes=settings.MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES,
        max_members=settings.MODEL_ARCHIVE_MAX_FILES,
        uncompressed_setting="MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES",
        members_setting="MODEL_ARCHIVE_MAX_FILES",
    )


def is_model_archive(upload: Upload) -> bool:
    """Whether an upload is a zipped model folder (by its name: a zip's content is also torch.save's)."""
    return upload.filename.lower().endswith(".zip")


def check_model_archive(path: Path, label: str) -> tuple[ModelArchive, archives.ArchiveListing]:
    """What a zipped model folder holds, from its listing alone (nothing inflated). Raises ActionError."""
    try:
        listing = archives.list_zip(path, model_archive_limits(), label)
        return plan_model_archive(listing.members, label), listing
    except archives.NotAZipError as exc:
        raise ActionError(
            f"{exc}: the file is damaged or not a zip; create the zip again and upload it.", field="uploads"
        ) from exc
    except (archives.ArchiveError, ModelFormatError) as exc:
        raise ActionError(str(exc), field="uploads") from exc


def do_start_model_from_archive(project: Project, user: User, *, name: str, upload: Upload) -> Job:
    """Check a zipped model folder's listing now and unpack it in a job (``projects.unpack_model``).

    The job creates the model (:func:`do_create_model_from_archive`). When the zip is refused
    here, the upload and its blob are deleted: nothing is kept.
    """
    _check_uploads(project, [upload])
    try:
        check_model_archive(blobs.local_path(upload.blob), upload.filename)
        return do_enqueue_job(
            project.organization,
            UNPACK_JOB,
            user=user,
            project=project,
            params={"upload": str(upload.pk), "name": (name or "").strip()},
        )
    except ActionError:
        _consume([upload], [upload.blob_id])
        raise


def unpack_model_archive(
    path: Path,
    label: str,
    project: Project,
    user: User,
    *,
    name: str = "",
    enqueue: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    upload: Upload | None = None,
) -> LanguageModel:
    """Unpack a zipped model folder into blobs and create the model from them (:func:`do_create_model`).

    Members are inflated one at a time and copied in bounded chunks into content-addressed blobs
    (hashed while copying; a file another model already has is stored once), counted against
    ``MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES`` as they inflate; no transaction is open meanwhile.
    ``progress(done, total, member)`` follows the bytes. The ``upload`` the zip came in, if any, is
    deleted with the model's creation. Raises ActionError when the zip is refused; blobs unpacked
    by then are deleted again unless something else holds them.
    """
    plan, listing = check_model_archive(path, label)
    total = sum(member.size for member in plan.files)
    inflation = archives.Inflation(
        model_archive_limits(),
        label,
        listing.declared_bytes,
        progress=(lambda done, member: progress(done, total, member.path)) if progress else None,
    )
    stored: list[tuple[str, Blob]] = []
    try:
        try:
            with closing(archives.read_members(path, plan.files, inflation)) as members:
                for member, stream in members:
                    stored.append((member.path, blobs.store_stream(stream)))
        except archives.ArchiveError as exc:
            raise ActionError(str(exc), field="uploads") from exc
        notes = []
        if plan.left_out:
            more = f" and {len(plan.left_out) - 10} more" if len(plan.left_out) > 10 else ""
            notes.append(
                f"files of the zip that are not model files were left out: {', '.join(plan.left_out[:10])}{more}"
            )
        with transaction.atomic():
            model = do_create_model(
                project, user, name=name or Path(label).stem, files=stored, enqueue=enqueue, notes=notes
            )
            if upload is not None:
                Upload.objects.filter(pk=upload.pk).delete()  # consumed: the model holds its files now
        return model
    finally:
        # Those no model took (refused, cancelled, failed): a retry stores them again.
        blobs.collect_garbage(only=[blob.pk for _, blob in stored])


def do_create_model_from_archive(
    upload: Upload, user: User, *, name: str = "", progress: Callable[[int, int, str], None] | None = None
) -> LanguageModel:
    """Create a model from an uploaded zip (what the unpack job runs); the upload is consumed
    when the zip becomes a model and when it is refused (ActionError): nothing is kept."""
    try:
        model = unpack_model_archive(
            blobs.local_path(upload.blob),
            upload.filename,
            upload.project,
            user,
            name=name,
            progress=progress,
            upload=upload,
        )
    except ActionError:
        _consume([upload], [upload.blob_id])
        raise
    blobs.collect_garbage(only=[upload.blob_id])
    return model


#: Files of a Hugging Face folder worth keeping (weights, index, config, tokenizer, templates).
FOLDER_SUFFIXES = MODEL_FILE_SUFFIXES


def do_import_model_files(
    path: Path,
    project: Project,
    user: User,
    *,
    name: str = "",
    stdout: TextIO | None = None,
    inline_inventory: bool = True,
) -> LanguageModel:
    """Import files already on this machine: store them as blobs, then :func:`do_create_model`.

    ``path`` is a GGUF file, a Hugging Face folder or a zip of one (unpacked here, as the unpack
    job does for an uploaded zip). Used by `manage.py import_model` and the demo bootstrap. With
    ``inline_inventory`` the inventory job runs in this process (progress on ``stdout``) instead
    of on a worker.
    """
    path = path.expanduser().resolve()
    if not path.exists():
        raise ActionError(f"{path} does not exist.", field="path")
    if path.is_file() and path.suffix.lower() == ".zip":
        with tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=f"unpacking {path.name}",
            file=stdout or sys.stderr,
            disable=stdout is None,
        ) as bar:

            def unpacked(done: int, total: int, member: str) -> None:
                bar.total = total
                bar.update(done - bar.n)

            model = unpack_model_archive(
                path, path.name, project, user, name=name or path.stem, enqueue=not inline_inventory, progress=unpacked
            )
        return _inventory_inline(model) if inline_inventory else model
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)
        if not files:
            raise ActionError(f"{path} holds no model files (.gguf, .safetensors, config.json).", field="path")
    else:
        files = [path]
    stored = []
    for file in files:
        relative = file.relative_to(path).as_posix() if path.is_dir() else file.name
        with tqdm(
            total=file.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=f"hashing {relative}",
            file=stdout or sys.stderr,
            disable=stdout is None,
        ) as bar:
            sha = blobs.sha256_of(file, progress=lambda done, total: bar.update(done - bar.n))
        stored.append((relative, blobs.store_path(file, sha256=sha)))
    try:
        model = do_create_model(project, user, name=name or path.stem, files=stored, enqueue=not inline_inventory)
    except ActionError:
        blobs.collect_garbage(only=[blob.sha256 for _, blob in stored])
        raise
    return _inventory_inline(model) if inline_inventory else model


def _inventory_inline(model: LanguageModel) -> LanguageModel:
    """Run the model's inventory job here (what a worker would run); its progress lines go to the log."""
    execute(Job.objects.get(kind="projects.inventory_model", params__model=model.pk).pk)
    model.refresh_from_db()
    return model


def engine_tensors(model: LanguageModel) -> list[TensorEntry]:
    """The model's tensor rows as the engine's entries (for comparison)."""
    return [
        TensorEntry(
            name=t.name,
            file=t.file.path,
            layer=t.layer,
            component=t.component,
            shape=tuple(t.shape),
            dtype=t.dtype,
            n_params=t.n_params,
            offset=t.offset,
            n_bytes=t.n_bytes,
            sha256=t.sha256 or None,
        )
        for t in model.tensors.select_related("file")
    ]


def comparison_of(a: LanguageModel, b: LanguageModel) -> dict:
    """The engine's comparison of two models' stored inventories, with their names."""
    from projects.engine.formats import compare_tensors

    for model in (a, b):
        if model.status != "ready":
            raise ActionError(
                f"{model} is not ready ({model.status}); compare it once its inventory has finished.", code="conflict"
            )
    result = compare_tensors(engine_tensors(a), engine_tensors(b)).as_dict()
    return {"a": {"id": a.pk, "name": a.name}, "b": {"id": b.pk, "name": b.name}, **result}
