"""Teacher-model jobs: the tensor inventory of a new model, and unpacking an uploaded archive."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from projects.actions import ActionError
from projects.actions import teachers as teacher_actions
from projects.background import JobContext, JobKind, Refused, register
from projects.models import Job, JobStatus, LanguageModel, ModelStatus, TensorRecord, Upload


@register
class InventoryModel(JobKind):
    """Read every tensor of a model, hash it, and record one row per tensor."""

    name = "projects.inventory_model"
    title = "Inventory model tensors"
    queue = "cpu"

    @classmethod
    def clean_params(cls, params: dict) -> dict:
        return {"model": int(params["model"])}

    def run(self, job: Job, ctx: JobContext) -> dict:
        from projects.actions.teachers import model_path
        from projects.engine.formats import inspect_model

        model = LanguageModel.objects.for_org(job.organization).get(pk=job.params["model"])
        ctx.progress(0.0, f"Reading the headers of {model.name}", force=True)
        path = model_path(model)

        def hashed(done: int, total: int) -> None:
            ctx.progress(
                0.95 * done / max(total, 1), f"Hashing tensors: {done / 2**20:,.0f} of {total / 2**20:,.0f} MiB"
            )

        info = inspect_model(path, with_hashes=True, progress=hashed)
        files = {f.path: f for f in model.files.all()}
        single = next(iter(files.values())) if model.format == "gguf" and len(files) == 1 else None
        ctx.progress(0.96, f"Recording {len(info.tensors)} tensors", force=True)
        with transaction.atomic():
            TensorRecord.objects.filter(model=model).delete()  # a retry starts clean
            TensorRecord.objects.bulk_create(
                [
                    TensorRecord(
                        model=model,
                        file=single or files[t.file],
                        name=t.name,
                        layer=t.layer,
                        component=t.component,
                        shape=list(t.shape),
                        dtype=t.dtype,
                        n_params=t.n_params,
                        offset=t.offset,
                        n_bytes=t.n_bytes,
                        sha256=t.sha256 or "",
                    )
                    for t in info.tensors
                ],
                batch_size=500,
            )
            ctx.check_cancelled()
            LanguageModel.objects.filter(pk=model.pk).update(status=ModelStatus.READY, error="")
        ctx.log(f"{len(info.tensors)} tensors, {info.n_params:,} parameters, {info.n_bytes:,} bytes of weights")
        ctx.progress(1.0, f"{model.name} is ready", force=True)
        ctx.add_artifact(model.name, f"/o/{job.organization.slug}/models/{model.pk}/")
        return {"model": model.pk, "tensors": len(info.tensors), "parameters": info.n_params}

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        reason = error or f"The inventory job was {status}."
        LanguageModel.objects.filter(pk=job.params.get("model"), status=ModelStatus.IMPORTING).update(
            status=ModelStatus.FAILED, error=f"{reason} (job #{job.pk}; retry it from the job page)"
        )


@register
class UnpackModelArchive(JobKind):
    """Unpack an uploaded zip of a model folder into blobs, then create the model from them.

    The zip's listing was checked when the job was asked for; here every member is inflated
    (counted against the cap, so a directory that lies cannot hide a bomb), hashed and stored,
    and the model is created as from any upload: headers checked, then the inventory job. A zip
    refused here leaves nothing (no model, no blob, no upload) and the job fails with the reason.
    """

    name = teacher_actions.UNPACK_JOB
    title = "Unpack model archive"
    queue = "cpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        try:
            upload = str(uuid.UUID(str(params["upload"])))
        except (KeyError, ValueError):
            raise ValueError('Unpacking needs the id of a completed upload of a zip: {"upload": "<uuid>"}.') from None
        return {"upload": upload, "name": str(params.get("name") or "")[:200]}

    def run(self, job: Job, ctx: JobContext) -> dict:
        upload = (
            Upload.objects.for_org(job.organization)
            .filter(pk=job.params["upload"], project=job.project)
            .select_related("blob", "project")
            .first()
        )
        if upload is None or upload.blob is None:
            raise LookupError(
                "The uploaded zip no longer exists (it was refused, cancelled or unpacked already); upload it again."
            )
        ctx.progress(0.0, f"Unpacking {upload.filename}", force=True)

        def unpacked(done: int, total: int, member: str) -> None:
            ctx.progress(
                0.99 * done / max(total, 1), f"Unpacking {member}: {done / 2**20:,.0f} of {total / 2**20:,.0f} MiB"
            )

        try:
            model = teacher_actions.do_create_model_from_archive(
                upload, job.created_by, name=job.params.get("name", ""), progress=unpacked
            )
        except ActionError as exc:
            ctx.log(f"refused: {exc.message}")
            raise Refused(f"{exc.message} Nothing was kept: fix the zip and upload it again.") from None
        files = model.files.count()
        ctx.log(f"unpacked {files} files of {upload.filename}; the tensor inventory of {model.name} follows")
        ctx.progress(1.0, f"{model.name} created; its tensors are being inventoried", force=True)
        ctx.add_artifact(model.name, f"/o/{job.organization.slug}/models/{model.pk}/")
        return {"model": model.pk, "files": files}

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        # A cancelled unpack keeps nothing (the zip may be tens of GB). After a crash or a lost
        # worker the upload is kept, so the job can be retried; a refused zip is already gone.
        if status == JobStatus.CANCELLED:
            from projects.actions.datasets import discard_upload

            upload = Upload.objects.for_org(job.organization).filter(pk=job.params.get("upload")).first()
            if upload is not None:
                discard_upload(upload)
