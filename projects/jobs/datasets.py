"""Background jobs of datasets: reading an upload into normalised documents, counting tokens.

Imported by ``projects.jobs`` so that ``autodiscover`` registers these kinds.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from projects import blobs
from projects.actions import ActionError
from projects.actions import datasets as dataset_actions
from projects.background import JobContext, JobKind, Refused, register
from projects.engine import datasets as engine
from projects.models import Dataset, DatasetStatus, Job


def _dataset(job: Job) -> Dataset:
    dataset = (
        Dataset.objects.for_org(job.organization)
        .filter(pk=job.params["dataset"])
        .select_related("source_blob", "documents_blob", "project")
        .first()
    )
    if dataset is None:
        raise LookupError(
            "The dataset no longer exists (it was deleted, or its file was refused); there is nothing to do."
        )
    return dataset


def _dataset_params(params: dict[str, Any], *extra: str) -> dict[str, Any]:
    try:
        cleaned = {"dataset": int(params["dataset"])}
    except (KeyError, TypeError, ValueError):
        raise ValueError('These jobs need the id of a dataset: {"dataset": <id>}.') from None
    for key in extra:
        if key in params:
            cleaned[key] = str(params[key])[:300]
    return cleaned


@register
class ProcessDataset(JobKind):
    """Read every document of an upload into the normalised JSONL; count, measure, split.

    A file refused here (a bad line, a zip that inflates past the cap, no documents…) is
    deleted with its dataset row and blobs, and the job fails with the reason.
    """

    name = dataset_actions.PROCESS_JOB
    title = "Process dataset"
    queue = "cpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        cleaned = _dataset_params(params, "name", "filename")
        if params.get("count_tokens_with") not in (None, ""):
            try:
                cleaned["count_tokens_with"] = int(params["count_tokens_with"])
            except (TypeError, ValueError):
                raise ValueError(
                    "count_tokens_with names the model whose tokenizer counts the tokens: its id."
                ) from None
        return cleaned

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        # Failed for another reason than the file (a crash, a cancel, a lost worker): the upload
        # is kept and the job can be retried. (A refused file's dataset is already deleted.)
        reason = error or f"Processing was {status}."
        Dataset.objects.filter(pk=job.params.get("dataset"), status=DatasetStatus.PROCESSING).update(
            status=DatasetStatus.FAILED, error=f"{reason} (job #{job.pk}; retry it from the job page)"
        )

    def run(self, job: Job, ctx: JobContext) -> dict:
        dataset = _dataset(job)
        Dataset.objects.filter(pk=dataset.pk).update(status=DatasetStatus.PROCESSING, job=job, error="")
        name = dataset.source_filename or dataset.name
        ctx.progress(0.0, f"Reading {name}", force=True)
        output = blobs.uploads_dir() / f"dataset-{dataset.pk}-job-{job.pk}.jsonl.partial"
        try:
            result = engine.normalise(
                blobs.local_path(dataset.source_blob),
                dataset_actions.dataset_options(dataset),
                output,
                dataset_actions.dataset_limits(),
                name=name,
                progress=lambda fraction, documents: ctx.progress(0.95 * fraction, f"Read {documents:,} documents"),
            )
            ctx.log(f"read {result.documents:,} documents, {result.characters:,} characters ({result.encoding})")
            if result.skipped:
                ctx.log(f"left out {result.skipped:,} empty documents")
            ctx.progress(0.96, "Storing the documents", force=True)
            documents_blob = blobs.store_path(output, move=True)
            with transaction.atomic():
                # Re-read: the split may have been chosen meanwhile; the row may be gone.
                current = Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
                if current is None:
                    ctx.log("the dataset was deleted while it was processed; nothing kept")
                    blobs.collect_garbage(only=[documents_blob.pk])
                    return {"deleted": True}
                train, eval_ = engine.split_counts(current.split_seed, current.split_ratio, result.documents)
                stats = {
                    **{k: v for k, v in current.stats.items() if k != "tokens"},
                    "characters": result.lengths,
                    "skipped": result.skipped,
                    "files": result.files,
                }
                Dataset.objects.filter(pk=dataset.pk).update(
                    status=DatasetStatus.READY,
                    documents_blob=documents_blob,
                    document_count=result.documents,
                    character_count=result.characters,
                    encoding=result.encoding[:200],
                    preview=result.preview,
                    train_count=train,
                    eval_count=eval_,
                    stats=stats,
                    token_count=None,
                    tokenizer="",
                    error="",
                )
        except engine.DatasetFormatError as exc:
            ctx.log(f"refused: {exc}")
            dataset_actions.discard_dataset(dataset)
            raise Refused(f"{exc} Nothing was kept: fix the file and upload it again.") from None
        finally:
            output.unlink(missing_ok=True)
        ctx.progress(1.0, f"{result.documents:,} documents ready", force=True)
        ctx.add_artifact("Dataset", f"/o/{job.organization.slug}/datasets/{dataset.pk}/")
        if job.params.get("count_tokens_with"):
            self._count_tokens(job, ctx, dataset.pk, job.params["count_tokens_with"])
        return {
            "documents": result.documents,
            "characters": result.characters,
            "skipped": result.skipped,
            "encoding": result.encoding,
            "train": train,
            "eval": eval_,
        }

    @staticmethod
    def _count_tokens(job: Job, ctx: JobContext, dataset_id: int, model_id: int) -> None:
        """Start the token count this dataset was created with (``count_tokens_with``)."""
        dataset = Dataset.objects.for_org(job.organization).filter(pk=dataset_id).first()
        if dataset is None:
            return
        try:
            counting = dataset_actions.do_count_tokens(dataset, job.created_by, model=model_id)
        except ActionError as exc:  # the model went away meanwhile: the dataset is ready all the same
            ctx.log(f"tokens not counted: {exc.message}")
            return
        ctx.log(f"token count started with model #{model_id} (job #{counting.pk})")


@register
class CountDatasetTokens(JobKind):
    """Count a dataset's tokens with a model's tokenizer (tokenizer.json; GGUF through llama.cpp)."""

    name = dataset_actions.COUNT_TOKENS_JOB
    title = "Count dataset tokens"
    queue = "cpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        cleaned = _dataset_params(params, "source", "source_id", "label")
        if cleaned.get("source") not in ("model", "upload") or not cleaned.get("source_id"):
            raise ValueError('Counting tokens needs a tokenizer source: {"source": "model"|"upload", "source_id": …}.')
        return cleaned

    def run(self, job: Job, ctx: JobContext) -> dict:
        dataset = _dataset(job)
        if dataset.status != DatasetStatus.READY or dataset.documents_blob is None:
            raise RuntimeError(f"{dataset} is {dataset.status}; tokens can be counted once it is ready.")
        source = dataset_actions.tokenizer_source_from_params(job.organization, job.params)
        ctx.progress(0.0, f"Loading the {source.label}", force=True)
        tokenizer = engine.load_tokenizer(blobs.local_path(source.blob), source.tokenizer_kind)
        ctx.log(f"counting with the {source.label}: {tokenizer.description}")
        counted = engine.count_tokens(
            blobs.local_path(dataset.documents_blob),
            tokenizer,
            progress=lambda fraction, documents: ctx.progress(
                fraction, f"Counted {documents:,} of {dataset.document_count:,} documents"
            ),
        )
        label = f"{source.label}: {tokenizer.description}"[:300]
        with transaction.atomic():
            current = Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
            if current is None:
                return {"deleted": True}
            Dataset.objects.filter(pk=dataset.pk).update(
                token_count=counted.tokens,
                tokenizer=label,
                stats={**current.stats, "tokens": counted.lengths, "tokenizer_sha256": source.blob.pk},
            )
        ctx.progress(1.0, f"{counted.tokens:,} tokens", force=True)
        ctx.add_artifact("Dataset", f"/o/{job.organization.slug}/datasets/{dataset.pk}/")
        return {"documents": counted.documents, "tokens": counted.tokens, "tokenizer": label}
