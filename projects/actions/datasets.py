"""Datasets in a project: creating them from uploads, splits, token counts, deleting, the demo data.

Creating a dataset checks at once what is cheap — the encoding (binary refused), a zip's
directory (bombs, nesting, paths), the options against the first documents — and refuses with
the reason before anything is kept. Reading every document into the normalised JSONL runs as
the ``datasets.process`` job (queue ``cpu``); a file that job refuses is deleted with its
dataset and upload, so a refused upload never leaves rows or blobs behind.

An upload that becomes a dataset is consumed: its row is deleted and the dataset holds the
blob (as ``projects.actions.teachers`` does for models). Only when the options do not fit the
file is the upload kept, so the same bytes can be tried again with other options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from projects import blobs
from projects.actions.base import ActionError
from projects.actions.blobs import do_delete_owning_blobs
from projects.actions.jobs import do_cancel_job, do_enqueue_job
from projects.actions.uploads import do_start_upload
from projects.engine import datasets as engine
from projects.models import (
    Blob,
    Dataset,
    DatasetRole,
    DatasetStatus,
    Job,
    JobStatus,
    LanguageModel,
    Organization,
    Project,
    Upload,
    UploadStatus,
)

PROCESS_JOB = "datasets.process"
COUNT_TOKENS_JOB = "datasets.count_tokens"

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo_data"


def dataset_limits() -> engine.DatasetLimits:
    """The limits in force (settings ``DATASET_MAX_*``, read from the environment)."""
    return engine.DatasetLimits(
        max_uncompressed_bytes=settings.DATASET_MAX_UNCOMPRESSED_BYTES,
        max_files=settings.DATASET_MAX_FILES,
        max_document_chars=settings.DATASET_MAX_DOCUMENT_CHARS,
    )


def dataset_options(dataset: Dataset) -> engine.DatasetOptions:
    return engine.DatasetOptions.from_dict(dataset.format, dataset.role, dataset.options)


# --- Uploads and blobs -------------------------------------------------------------------


def do_store_upload(
    project: Project, user: User, *, filename: str, stream: BinaryIO | None = None, path: Path | None = None
) -> Upload:
    """A complete Upload holding a file that arrived whole (a form's file, a file on the server).

    Same checks as a resumable upload (name, size, archived project); the bytes go through
    ``blobs.store_stream`` / ``blobs.store_path`` (streamed, hashed, deduplicated).
    """
    if (stream is None) == (path is None):
        raise ValueError("give either stream or path")
    size = Path(path).stat().st_size if path is not None else int(getattr(stream, "size", 0) or 0)
    upload = do_start_upload(project, user, filename=filename, size=size)
    try:
        if path is not None:
            blob = blobs.store_path(Path(path))
        else:
            blob = blobs.store_stream(stream, max_bytes=settings.UPLOAD_MAX_BYTES)
    except blobs.BlobError as exc:
        upload.delete()
        raise ActionError(str(exc), field="file") from exc
    Upload.objects.filter(pk=upload.pk).update(
        status=UploadStatus.COMPLETE, size=blob.size, received=blob.size, blob=blob
    )
    upload.refresh_from_db()
    return upload


def discard_upload(upload: Upload) -> None:
    """Delete an upload, what arrived of it, and its blob unless something else holds that blob."""
    sha = upload.blob_id
    blobs.part_path(upload).unlink(missing_ok=True)
    Upload.objects.filter(pk=upload.pk).delete()
    if sha:
        blobs.collect_garbage(only=[sha])


# --- Creating ----------------------------------------------------------------------------


def _clean_options(format: str, role: str, options: dict | None) -> engine.DatasetOptions:
    if role not in DatasetRole.values:
        raise ActionError(f"Unknown role “{role}”; choose one of {', '.join(DatasetRole.values)}.", field="role")
    if not isinstance(options, (dict, type(None))):
        raise ActionError('The options must be an object, e.g. {"text_field": "text"}.', field="options")
    try:
        return engine.DatasetOptions.from_dict(format, role, options or {})
    except engine.DatasetOptionsError as exc:
        raise ActionError(str(exc), field="options") from exc


def _clean_split(ratio: object, seed: object) -> tuple[float, int]:
    try:
        ratio, seed = float(ratio), int(seed)
        engine.validate_split(ratio, seed)
    except (TypeError, ValueError) as exc:
        message = (
            str(exc)
            if "must be" in str(exc)
            else f"The split needs a ratio between 0 and 1 and a whole-number seed ({exc})."
        )
        raise ActionError(message, field="split") from exc
    return ratio, seed


def do_create_dataset(
    upload: Upload,
    user: User,
    *,
    name: str = "",
    role: str = DatasetRole.DOMAIN,
    format: str = "",
    options: dict | None = None,
    split_ratio: float = 0.9,
    split_seed: int = 0,
    discard_on_error: bool = False,
    count_tokens_with: LanguageModel | None = None,
) -> Dataset:
    """Check a completed upload and create a dataset from it; processing runs as a job.

    With ``count_tokens_with`` (a model of the project) the processing job, once it succeeds,
    starts the token count with that model's tokenizer (:func:`do_count_tokens`).
    Raises ActionError: for options that do not fit the file (the upload is kept, to be tried
    again), and for files that are refused (the upload and its blob are deleted: nothing kept).
    With ``discard_on_error`` the upload is deleted whatever the error.
    """
    try:
        return _create_dataset(
            upload,
            user,
            name=name,
            role=role,
            format=format,
            options=options,
            split_ratio=split_ratio,
            split_seed=split_seed,
            keep_upload=not discard_on_error,
            count_tokens_with=count_tokens_with,
        )
    except ActionError:
        if discard_on_error:
            discard_upload(upload)
        raise


def _create_dataset(
    upload: Upload,
    user: User,
    *,
    name: str,
    role: str,
    format: str,
    options: dict[str, Any],
    split_ratio: object,
    split_seed: object,
    keep_upload: bool,
    count_tokens_with: LanguageModel | None = None,
) -> Dataset:
    project = upload.project
    org = project.organization
    if project.is_archived:
        raise ActionError(f"Project {project} is archived; unarchive it to add datasets.", field="project")
    if upload.status != UploadStatus.COMPLETE or upload.blob_id is None:
        raise ActionError(
            f"{upload.filename} has not finished uploading ({upload.received} of {upload.size} bytes); complete it "
            "first.",
            field="upload",
            code="conflict",
        )
    format = (format or "").strip() or engine.detect_dataset_format(upload.filename) or ""
    if not format:
        raise ActionError(
            f"The name “{upload.filename}” does not say what the file is: choose the format "
            f"({', '.join(engine.FORMATS)}).",
            field="format",
        )
    dataset_options_ = _clean_options(format, role, options)
    split_ratio, split_seed = _clean_split(split_ratio, split_seed)
    name = ((name or "").strip() or Path(upload.filename).stem or upload.filename)[:200]
    if Dataset.objects.for_org(org).filter(project=project, name=name).exists():
        raise ActionError(
            f"Project {project} already has a dataset called “{name}”; choose another name.",
            field="name",
            code="duplicate",
        )
    try:
        inspection = engine.inspect_source(
            blobs.local_path(upload.blob), dataset_options_, dataset_limits(), name=upload.filename
        )
    except engine.DatasetOptionsError as exc:
        kept = " The upload is kept: try again with other options." if keep_upload else ""
        raise ActionError(f"{exc}{kept}", field="options") from exc
    except engine.DatasetFormatError as exc:
        discard_upload(upload)
        raise ActionError(f"{exc} Nothing was kept.", field="upload") from exc
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                organization=org,
                project=project,
                name=name,
                role=role,
                format=format,
                status=DatasetStatus.PROCESSING,
                source_blob_id=upload.blob_id,
                source_filename=upload.filename,
                options=dataset_options_.as_dict(),
                encoding=inspection.encoding,
                preview=inspection.preview,
                split_ratio=split_ratio,
                split_seed=split_seed,
                stats={"fields": inspection.fields, "files": inspection.files},
                created_by=user,
            )
            then = {"count_tokens_with": count_tokens_with.pk} if count_tokens_with is not None else {}
            dataset.job = do_enqueue_job(
                org,
                PROCESS_JOB,
                user=user,
                project=project,
                params={"dataset": dataset.pk, "name": name, "filename": upload.filename, **then},
            )
            dataset.save(update_fields=["job"])
            Upload.objects.filter(pk=upload.pk).delete()  # consumed: the dataset holds the blob now
    except IntegrityError:
        raise ActionError(
            f"A dataset called “{name}” was just created in {project}; choose another name.",
            field="name",
            code="duplicate",
        ) from None
    return dataset


def do_create_dataset_from_file(
    project: Project,
    user: User,
    *,
    filename: str,
    stream: BinaryIO | None = None,
    path: Path | None = None,
    **kwargs,
) -> Dataset:
    """Store a whole file as an upload and create a dataset from it (the HTML form, the demo data).

    Whatever goes wrong, nothing is kept: the form sends the file again anyway.
    """
    upload = do_store_upload(project, user, filename=filename, stream=stream, path=path)
    return do_create_dataset(upload, user, discard_on_error=True, **kwargs)


# --- Processing (called by the job) -----------------------------------------------------------


def discard_dataset(dataset: Dataset) -> None:
    """Delete a refused dataset with everything it kept: rows and blobs (when nothing else holds them)."""
    shas = [sha for sha in (dataset.source_blob_id, dataset.documents_blob_id) if sha]
    Dataset.objects.filter(pk=dataset.pk).delete()
    blobs.collect_garbage(only=shas)


# --- Splits ----------------------------------------------------------------------------------


def do_set_split(dataset: Dataset, ratio: object, seed: object) -> Dataset:
    """Change the train/eval split (instant: a document's split is a function of seed and id)."""
    if dataset.status != DatasetStatus.READY:
        raise ActionError(f"{dataset} is {dataset.status}; a split can be set once it is ready.", code="conflict")
    ratio, seed = _clean_split(ratio, seed)
    train, eval_ = engine.split_counts(seed, ratio, dataset.document_count)
    Dataset.objects.filter(pk=dataset.pk).update(
        split_ratio=ratio, split_seed=seed, train_count=train, eval_count=eval_
    )
    dataset.refresh_from_db()
    return dataset


# --- Tokenizers and token counts ---------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerSource:
    """Where a tokenizer comes from: a model of the project, or an uploaded tokenizer.json."""

    kind: Literal["model", "upload"]
    id: str
    label: str
    tokenizer_kind: Literal["tokenizer.json", "gguf"]
    blob: Blob

    @property
    def params(self) -> dict[str, str]:
        return {"source": self.kind, "source_id": self.id}


def _language_models():
    """The teacher/student model class, where this installation has it."""
    try:
        return apps.get_model("projects", "LanguageModel")
    except LookupError:  # pragma: no cover - models arrive with their own capability
        return None


def _model_source(model: LanguageModel) -> TokenizerSource | None:
    files = list(model.files.select_related("blob"))
    for file in files:
        if file.path.rsplit("/", 1)[-1] == "tokenizer.json":
            return TokenizerSource(
                "model",
                str(model.pk),
                f"tokenizer.json of model “{model.name}” (#{model.pk})",
                "tokenizer.json",
                file.blob,
            )
    for file in files:
        if file.path.lower().endswith(".gguf"):
            return TokenizerSource(
                "model", str(model.pk), f"GGUF vocabulary of model “{model.name}” (#{model.pk})", "gguf", file.blob
            )
    return None


def tokenizer_sources(project: Project) -> list[TokenizerSource]:
    """The tokenizers the project's models offer: tokenizer.json ones first, then GGUF vocabularies."""
    LanguageModel = _language_models()
    if LanguageModel is None:
        return []
    models = LanguageModel.objects.for_org(project.organization).filter(project=project).exclude(status="failed")
    sources = [source for model in models if (source := _model_source(model)) is not None]
    return sorted(sources, key=lambda s: s.tokenizer_kind != "tokenizer.json")


def find_tokenizer_source(
    org: Organization, project: Project, *, model: LanguageModel | None = None, tokenizer_upload: Upload | None = None
) -> TokenizerSource:
    """The tokenizer to count with: the model or uploaded tokenizer.json named, or the project's
    first; ActionError (400) when there is none. Counts are never estimated."""
    if model not in (None, "") and tokenizer_upload not in (None, ""):
        raise ActionError("Name either a model or a tokenizer upload, not both.", field="model")
    if model not in (None, ""):
        LanguageModel = _language_models()
        try:
            model_id = int(model)
        except (TypeError, ValueError):
            raise ActionError(f"“{model}” is not a model id.", field="model") from None
        found = (
            LanguageModel.objects.for_org(org).filter(pk=model_id, project=project).first() if LanguageModel else None
        )
        if found is None:
            raise ActionError(f"Project {project} has no model #{model_id}.", field="model", code="not_found")
        source = _model_source(found)
        if source is None:
            raise ActionError(
                f"Model “{found.name}” has neither a tokenizer.json nor a GGUF vocabulary.", field="model"
            )
    elif tokenizer_upload not in (None, ""):
        upload = Upload.objects.for_org(org).filter(pk=_uuid(tokenizer_upload), project=project).first()
        if upload is None:
            raise ActionError(
                f"Project {project} has no upload {tokenizer_upload}.", field="tokenizer_upload", code="not_found"
            )
        if upload.status != UploadStatus.COMPLETE or upload.blob_id is None:
            raise ActionError(
                f"{upload.filename} has not finished uploading.", field="tokenizer_upload", code="conflict"
            )
        try:
            engine.load_tokenizer(blobs.local_path(upload.blob), "tokenizer.json")
        except engine.TokenizerError as exc:
            raise ActionError(
                str(exc).replace(f"“{upload.blob_id}”", f"“{upload.filename}”"), field="tokenizer_upload"
            ) from exc
        source = TokenizerSource("upload", str(upload.pk), f"uploaded {upload.filename}", "tokenizer.json", upload.blob)
    else:
        sources = tokenizer_sources(project)
        if not sources:
            raise ActionError(
                f"No tokenizer is available in project {project}: token counts need the tokenizer of the model they "
                "are "
                "for. Add a model with a tokenizer.json (a Hugging Face folder) to the project, or upload a "
                "tokenizer.json "
                "and name it (tokenizer_upload). Counts are never estimated.",
                field="model",
            )
        source = sources[0]
    return source


def _uuid(value: object) -> str | None:
    import uuid

    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def tokenizer_source_from_params(org: Organization, params: dict) -> TokenizerSource:
    """Re-find a job's tokenizer source through the scoped managers (it may have been deleted since)."""
    if params["source"] == "model":
        LanguageModel = _language_models()
        model = (
            LanguageModel.objects.for_org(org).filter(pk=int(params["source_id"])).first() if LanguageModel else None
        )
        source = _model_source(model) if model is not None else None
        if source is None:
            raise engine.TokenizerError(
                "The model whose tokenizer was chosen no longer exists (or lost its tokenizer)."
            )
        return source
    upload = Upload.objects.for_org(org).filter(pk=params["source_id"]).select_related("blob").first()
    if upload is None or upload.blob is None:
        raise engine.TokenizerError("The uploaded tokenizer.json no longer exists; upload it again.")
    return TokenizerSource("upload", str(upload.pk), f"uploaded {upload.filename}", "tokenizer.json", upload.blob)


def do_count_tokens(
    dataset: Dataset, user: User, *, model: LanguageModel | None = None, tokenizer_upload: Upload | None = None
) -> Job:
    """Count the dataset's tokens with a model's tokenizer (a job on the ``cpu`` queue)."""
    if dataset.status != DatasetStatus.READY:
        raise ActionError(f"{dataset} is {dataset.status}; tokens can be counted once it is ready.", code="conflict")
    source = find_tokenizer_source(
        dataset.organization, dataset.project, model=model, tokenizer_upload=tokenizer_upload
    )
    with transaction.atomic():
        job = do_enqueue_job(
            dataset.organization,
            COUNT_TOKENS_JOB,
            user=user,
            project=dataset.project,
            params={"dataset": dataset.pk, **source.params, "label": source.label},
        )
        Dataset.objects.filter(pk=dataset.pk).update(job=job)
        dataset.job = job
    return job


# --- Deleting ---------------------------------------------------------------------------------


def do_delete_dataset(dataset: Dataset) -> None:
    """Delete a dataset nothing depends on; its blobs are then collected when nothing else holds them."""
    job = dataset.job
    if job is not None and job.can_cancel:
        try:
            do_cancel_job(job)
        except ActionError:
            pass  # it just finished
    do_delete_owning_blobs(dataset, [dataset.source_blob_id, dataset.documents_blob_id])


# --- Demo data ----------------------------------------------------------------------------------

#: The datasets ``manage.py bootstrap_demo`` loads (files under projects/demo_data/, see ATTRIBUTION.md).
DEMO_DATASETS = (
    {
        "name": "MedQuAD (subset)",
        "file": "medquad-train-subset.jsonl",
        "role": DatasetRole.DOMAIN,
        "format": "jsonl",
        "options": {"template": "Question: {question}\nAnswer: {answer}"},
    },
    {
        "name": "Python language reference",
        "file": "python-reference.jsonl",
        "role": DatasetRole.CONTROL,
        "format": "jsonl",
        "options": {"text_field": "text"},
    },
    {
        "name": "Factual recall pairs",
        "file": "prompt-pairs.jsonl",
        "role": DatasetRole.PROMPT_PAIRS,
        "format": "jsonl",
        "options": {},
    },
)


def load_demo_datasets(
    project: Project, user: User, *, count_tokens_with: LanguageModel | None = None
) -> list[Dataset]:
    """Create the demo datasets in ``project`` through the upload path (idempotent).

    A demo dataset that already exists is kept, unless it failed, in which case it is made again.
    A dataset made here has its tokens counted with ``count_tokens_with`` (a model) once it is
    processed; see :func:`start_demo_token_counts` for those that exist already.
    """
    created = []
    for spec in DEMO_DATASETS:
        existing = Dataset.objects.for_org(project.organization).filter(project=project, name=spec["name"]).first()
        if existing is not None and existing.status != DatasetStatus.FAILED:
            created.append(existing)
            continue
        if existing is not None:
            do_delete_dataset(existing)
        created.append(
            do_create_dataset_from_file(
                project,
                user,
                filename=spec["file"],
                path=DEMO_DIR / spec["file"],
                name=spec["name"],
                role=spec["role"],
                format=spec["format"],
                options=spec["options"],
                count_tokens_with=count_tokens_with,
            )
        )
    return created


def start_demo_token_counts(datasets: list[Dataset], model: LanguageModel, user: User) -> list[Job]:
    """Count the demo datasets' tokens with ``model``'s tokenizer, once (idempotent).

    Nothing is started for a dataset that has counts already, that is being counted (a count job
    queued or running), or that is still being processed by a job that will start its count when
    it is done (``count_tokens_with``). Returns the jobs started.
    """
    started = []
    for dataset in datasets:
        dataset.refresh_from_db()
        if dataset.token_count is not None or dataset.status == DatasetStatus.FAILED:
            continue
        counting = Job.objects.for_org(dataset.organization).filter(
            kind=COUNT_TOKENS_JOB, params__dataset=dataset.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        )
        if counting.exists():
            continue
        if dataset.status != DatasetStatus.READY:
            # Processing: its job counts the tokens afterwards if it was asked to; otherwise the
            # next bootstrap (the dataset ready by then) starts the count.
            continue
        started.append(do_count_tokens(dataset, user, model=model.pk))
    return started
