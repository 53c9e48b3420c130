"""Background jobs that convert a model into the other format (GGUF <-> Hugging Face), once.

Imported by ``projects.jobs`` so that ``autodiscover`` registers these kinds. Each job writes
into ``DATA_DIR/conversions/job-<id>/``, stores the finished files as blobs and only then
creates the derived model (``derived_from`` = the source), whose own inventory job makes it
ready. A failed, cancelled or lost job leaves no model row, no blob and no work folder.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.text import slugify

from projects import blobs
from projects.actions.conversion import (
    DEFAULT_GGUF_OUTTYPE,
    TO_GGUF_JOB,
    TO_HF_JOB,
    check_convertible,
    existing_derivative,
)
from projects.background import JobContext, JobKind, register
from projects.models import Blob, Job, LanguageModel, ModelFormat

#: Share of the progress bar the engine's conversion takes; storing the files takes the rest.
CONVERT_SHARE = 0.85


def conversion_workdir(job_id: int) -> Path:
    """Where a conversion job writes (removed when the job ends, whatever the outcome)."""
    return settings.DATA_DIR / "conversions" / f"job-{job_id}"


def tools_dir() -> Path:
    """Where llama.cpp's converter is kept (``LLAMA_CPP_TOOLS_DIR``, default ``DATA_DIR/tools``)."""
    return Path(getattr(settings, "LLAMA_CPP_TOOLS_DIR", None) or settings.DATA_DIR / "tools")


class ConvertModel(JobKind):
    """Convert a ready model into :attr:`target`; reuse the derivative when it already exists."""

    queue = "cpu"
    target: str

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"model": int(params["model"])}
        except (KeyError, TypeError, ValueError):
            raise ValueError('A conversion needs the id of the model to convert: {"model": <id>}.') from None

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        # Nothing was created before the files were complete; only the work folder may be left
        # (a killed worker never reached its own clean-up).
        shutil.rmtree(conversion_workdir(job.pk), ignore_errors=True)

    def outtype(self, job: Job) -> str | None:
        return None

    def derivative_name(self, source: LanguageModel, job: Job) -> str:
        raise NotImplementedError

    def convert(self, source: LanguageModel, workdir: Path, ctx: JobContext, job: Job) -> Path:
        """Write the converted model under ``workdir``; return the file or folder written."""
        raise NotImplementedError

    def run(self, job: Job, ctx: JobContext) -> dict:
        from projects.actions.teachers import do_create_model

        source = (
            LanguageModel.objects.for_org(job.organization)
            .select_related("project")
            .filter(pk=job.params["model"])
            .first()
        )
        if source is None:
            raise LookupError("The model to convert no longer exists; there is nothing to do.")
        outtype = self.outtype(job)
        if done := self._reuse(source, outtype, ctx, job):
            return done
        check_convertible(source, self.target)
        workdir = conversion_workdir(job.pk)
        shutil.rmtree(workdir, ignore_errors=True)  # a retry starts clean
        workdir.mkdir(parents=True)
        stored: list[tuple[str, Blob]] = []
        started = time.monotonic()
        try:
            output = self.convert(source, workdir, ctx, job)
            converted_in = time.monotonic() - started
            files = sorted(p for p in output.rglob("*") if p.is_file()) if output.is_dir() else [output]
            total = sum(p.stat().st_size for p in files) or 1
            done_bytes = 0
            for file in files:
                ctx.progress(CONVERT_SHARE + 0.12 * done_bytes / total, f"Storing {file.name}", force=True)
                relative = file.relative_to(output).as_posix() if output.is_dir() else file.name
                size = file.stat().st_size
                stored.append((relative, blobs.store_path(file, move=True)))
                done_bytes += size
            ctx.check_cancelled()
            if done := self._reuse(source, outtype, ctx, job):  # another job finished the same copy meanwhile
                blobs.collect_garbage(only=[blob.sha256 for _, blob in stored])
                return done
            ctx.progress(0.98, "Creating the converted model", force=True)
            derivative = do_create_model(
                source.project,
                job.created_by,
                name=self.derivative_name(source, job),
                files=stored,
                role=source.role,
                derived_from=source,
            )
        except BaseException:
            # No model was created: free the blobs just stored (those another row uses are kept).
            blobs.collect_garbage(only=[blob.sha256 for _, blob in stored])
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        size = sum(blob.size for _, blob in stored)
        ctx.log(
            f"converted {source.name} ({source.get_format_display()}) in {converted_in:.1f} s: "
            f"{len(stored)} files, {size:,} bytes; the inventory of {derivative.name} follows"
        )
        ctx.add_artifact(derivative.name, f"/o/{job.organization.slug}/models/{derivative.pk}/")
        ctx.progress(1.0, f"{derivative.name} created; its inventory job follows", force=True)
        return {
            "model": derivative.pk,
            "source": source.pk,
            "reused": False,
            "files": len(stored),
            "bytes": size,
            "seconds": round(converted_in, 2),
        }

    def _reuse(self, source: LanguageModel, outtype: str | None, ctx: JobContext, job: Job) -> dict | None:
        existing = existing_derivative(source, self.target, outtype)
        if existing is None:
            return None
        ctx.log(
            f"{existing.name} (model #{existing.pk}) is already a {existing.get_format_display()} copy of "
            f"{source.name}; "
            "nothing was converted"
        )
        ctx.add_artifact(existing.name, f"/o/{job.organization.slug}/models/{existing.pk}/")
        ctx.progress(1.0, f"Already converted: {existing.name}", force=True)
        return {"model": existing.pk, "source": source.pk, "reused": True}

    @staticmethod
    def source_path(source: LanguageModel, workdir: Path) -> Path:
        """What the engine opens: the source's GGUF file or Hugging Face folder (links to its blobs).

        Laid out in the job's own folder rather than through ``teacher_actions.model_path``: that
        shared folder may be in use, and ``blobs.materialize_folder`` refuses to lay out a folder
        a second time (its escape check follows the existing links).
        """
        folder = blobs.materialize_folder(
            [(f.path, f.blob) for f in source.files.select_related("blob")], workdir / "source"
        )
        if source.format == ModelFormat.GGUF:
            return next(folder.rglob("*.gguf"))
        return folder

    @staticmethod
    def _engine_progress(ctx: JobContext) -> Callable[[float, str], None]:
        return lambda fraction, message: ctx.progress(CONVERT_SHARE * fraction, message)


@register
class ConvertToHuggingFace(ConvertModel):
    """Dequantize a llama GGUF into a float32 Hugging Face checkpoint (the torch copy analysis reads)."""

    name = TO_HF_JOB
    title = "Convert to Hugging Face (torch copy)"
    target = ModelFormat.SAFETENSORS

    def derivative_name(self, source: LanguageModel, job: Job) -> str:
        return f"{source.name[:170]} · Hugging Face"

    def convert(self, source: LanguageModel, workdir: Path, ctx: JobContext, job: Job) -> Path:
        from projects.engine.conversion import gguf_to_hf

        ctx.progress(0.0, f"Converting {source.name} to a Hugging Face checkpoint", force=True)
        return gguf_to_hf(self.source_path(source, workdir), workdir / "hf", self._engine_progress(ctx))


@register
class ConvertToGGUF(ConvertModel):
    """Write a GGUF of a llama Hugging Face checkpoint with llama.cpp's official converter."""

    name = TO_GGUF_JOB
    title = "Convert to GGUF"
    target = ModelFormat.GGUF

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        from projects.engine.conversion import GGUF_OUTTYPES

        cleaned = super().clean_params(params)
        outtype = str(params.get("outtype") or DEFAULT_GGUF_OUTTYPE).lower()
        if outtype not in GGUF_OUTTYPES:
            raise ValueError(f"outtype must be one of {', '.join(GGUF_OUTTYPES)}, not {outtype!r}.")
        return cleaned | {"outtype": outtype}

    def outtype(self, job: Job) -> str | None:
        return job.params.get("outtype", DEFAULT_GGUF_OUTTYPE)

    def derivative_name(self, source: LanguageModel, job: Job) -> str:
        return f"{source.name[:170]} · GGUF {self.outtype(job).upper()}"

    def convert(self, source: LanguageModel, workdir: Path, ctx: JobContext, job: Job) -> Path:
        from projects.engine.conversion import fetch_converter, hf_to_gguf

        outtype = self.outtype(job)
        converter = fetch_converter(tools_dir(), progress=lambda _f, message: ctx.progress(0.0, message, force=True))
        ctx.log(f"converter: {converter}")
        stem = slugify(source.name)[:80] or f"model-{source.pk}"
        return hf_to_gguf(
            self.source_path(source, workdir),
            workdir / f"{stem}-{outtype}.gguf",
            self._engine_progress(ctx),
            outtype=outtype,
            converter=converter,
        )
