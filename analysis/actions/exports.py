"""Exporting a training run's coders for circuit-tracer or SAELens: checked while the person waits, then a job."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from analysis.models import CoderExport, CoderKind, CoderRun, CoderRunStatus, ExportFormat
from projects.actions import ActionError, do_enqueue_job

EXPORT_JOB = "analysis.export_coders"


def do_export_coders(run: CoderRun, user: User, *, format: str, kind: str = CoderKind.SKIP_TRANSCODER) -> CoderExport:
    """Write ``run``'s coders of ``kind`` in ``format`` as a zip (a job); the row is downloadable once complete."""
    if format not in ExportFormat.values:
        raise ActionError(f"Export as {' or '.join(ExportFormat.values)}.", field="format")
    if kind not in CoderKind.values:
        raise ActionError(f"The kind is one of {', '.join(CoderKind.values)}.", field="kind")
    if run.status != CoderRunStatus.COMPLETE:
        raise ActionError(f"Run #{run.pk} has not finished ({run.status}).", code="conflict")
    layers = sorted(run.coders.filter(kind=kind).values_list("layer", flat=True))
    if not layers:
        raise ActionError(f"Run #{run.pk} trained no {CoderKind(kind).label.lower()}.", field="kind")
    if format == ExportFormat.CIRCUIT_TRACER:
        if kind == CoderKind.SAE:
            raise ActionError(
                "circuit-tracer replaces each MLP with a transcoder (MLP input → MLP output); an SAE cannot stand in. "
                "Export the skip transcoders, or export the SAEs to SAELens.",
                field="kind",
            )
        n_layers = int(run.capture.teacher.metadata.get("block_count") or 0)
        missing = sorted(set(range(n_layers)) - set(layers))
        if missing:
            raise ActionError(
                f"circuit-tracer needs a transcoder for every layer 0…{n_layers - 1} of the teacher; this run has "
                f"layers {layers}. Capture and train every layer (model.layers.*.mlp), then export.",
                field="format",
            )
    with transaction.atomic():
        export = CoderExport.objects.create(
            organization=run.organization, run=run, format=format, kind=kind, created_by=user
        )
        job = do_enqueue_job(run.organization, EXPORT_JOB, project=run.capture.project, user=user,
                             params={"export": export.pk})  # fmt: skip
        CoderExport.objects.filter(pk=export.pk).update(job=job)
        export.job = job
    return export
