"""The export job: a run's coders written with the engine's exporters, zipped, stored as one blob.

The zip is written under a temporary name and becomes the export's blob only when whole; a failed or killed
job leaves the export ``failed`` with no file (nothing half-written is downloadable).
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from analysis.actions.exports import EXPORT_JOB
from analysis.jobs.features import load_coder
from analysis.models import CoderExport, ExportFormat, ExportStatus
from projects import blobs
from projects.background import JobContext, JobKind, Refused, register
from projects.models import Job


@register
class ExportCoders(JobKind):
    """Write a run's coders for circuit-tracer (a transcoder set) or SAELens (a folder per layer), as a zip."""

    name = EXPORT_JOB
    title = "Export coders"
    queue = "cpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("export"), int):
            raise ValueError('An export job needs the id of its export: {"export": <id>}.')
        return {"export": params["export"]}

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        CoderExport.objects.for_org(job.organization).filter(pk=job.params.get("export")).exclude(
            status=ExportStatus.COMPLETE
        ).update(status=ExportStatus.FAILED, error=error or status, finished_at=timezone.now())

    def run(self, job: Job, ctx: JobContext) -> dict:
        from analysis.engine.export import ExportError, export_circuit_tracer, export_saelens

        export = (
            CoderExport.objects.for_org(job.organization)
            .select_related("run__capture__teacher")
            .filter(pk=job.params.get("export"))
            .first()
        )
        if export is None:
            raise Refused("The export was deleted before its job ran.")
        CoderExport.objects.filter(pk=export.pk).update(status=ExportStatus.WRITING, error="", job=job)
        rows = list(export.run.coders.filter(kind=export.kind).select_related("config_blob", "weights_blob"))
        teacher = export.run.capture.teacher
        model_name = teacher.metadata.get("name") or teacher.name
        with tempfile.TemporaryDirectory(dir=settings.DATA_DIR) as tmp:
            folder = Path(tmp) / export.filename.removesuffix(".zip")
            coders = {}
            for i, row in enumerate(rows):
                ctx.progress(0.6 * i / len(rows), f"Loading layer {row.layer}")
                coders[row.layer] = load_coder(row)
            ctx.progress(0.6, "Writing the files", force=True)
            try:
                if export.format == ExportFormat.CIRCUIT_TRACER:
                    n_layers = int(teacher.metadata.get("block_count") or len(coders))
                    export_circuit_tracer(coders, folder, n_layers=n_layers, model_name=model_name)
                else:
                    for layer, coder in coders.items():
                        export_saelens(coder, folder / f"layer_{layer}", model_name=model_name)
            except ExportError as exc:
                raise Refused(str(exc)) from exc
            ctx.progress(0.8, "Zipping", force=True)
            partial = Path(tmp) / "export.zip.partial"
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(folder.parent).as_posix())
            blob = blobs.store_path(partial, move=True)
        CoderExport.objects.filter(pk=export.pk, status=ExportStatus.WRITING).update(
            status=ExportStatus.COMPLETE, blob=blob, finished_at=timezone.now()
        )
        ctx.progress(1.0, f"{len(coders)} coders exported for {export.get_format_display()}", force=True)
        return {"export": export.pk, "bytes": blob.size}
