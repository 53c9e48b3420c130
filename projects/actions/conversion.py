"""Converting a model into the other format: a derivative made once, by a job.

A GGUF teacher gets a torch-ready Hugging Face copy (dequantized safetensors, for analysis);
a safetensors teacher gets a GGUF (for chat on llama.cpp). The copy is a new
``LanguageModel`` with ``derived_from`` set to its source; asking again returns it (or the
conversion already under way) instead of converting twice.
"""

from __future__ import annotations

from typing import NamedTuple

from django.contrib.auth.models import User

from projects.actions.base import ActionError
from projects.actions.jobs import do_enqueue_job
from projects.engine.conversion import GGUF_OUTTYPES
from projects.models import Job, JobStatus, LanguageModel, ModelFormat, ModelStatus

TO_HF_JOB = "projects.convert_to_hf"
TO_GGUF_JOB = "projects.convert_to_gguf"
#: The job kind that produces each target format.
CONVERSION_JOBS = {ModelFormat.SAFETENSORS: TO_HF_JOB, ModelFormat.GGUF: TO_GGUF_JOB}
#: What people and API clients may call the target formats.
FORMAT_ALIASES = {
    "safetensors": ModelFormat.SAFETENSORS,
    "hf": ModelFormat.SAFETENSORS,
    "huggingface": ModelFormat.SAFETENSORS,
    "torch": ModelFormat.SAFETENSORS,
    "gguf": ModelFormat.GGUF,
}
DEFAULT_GGUF_OUTTYPE = "f16"


class ConversionRequest(NamedTuple):
    """What asking for a conversion gave: the derivative that already exists, or the job making it."""

    derivative: LanguageModel | None
    job: Job | None


def target_format(value: str) -> str:
    """The ModelFormat a requested target names (``hf``/``safetensors``/``gguf``), or ActionError."""
    target = FORMAT_ALIASES.get((value or "").strip().lower())
    if target is None:
        raise ActionError(f"Convert to “gguf” or “safetensors” (Hugging Face), not “{value}”.", field="format")
    return target


def derivative_file_type(target: str, outtype: str | None) -> str | None:
    """The ``file_type`` a derivative in ``target`` made with ``outtype`` records (GGUF only)."""
    return GGUF_OUTTYPES[outtype] if target == ModelFormat.GGUF and outtype else None


def existing_derivative(source: LanguageModel, target: str, outtype: str | None = None) -> LanguageModel | None:
    """A copy of ``source`` in ``target`` that is ready or being inventoried (failed ones do not count)."""
    derivatives = LanguageModel.objects.for_org(source.organization).filter(
        derived_from=source, format=target, status__in=[ModelStatus.READY, ModelStatus.IMPORTING]
    )
    if file_type := derivative_file_type(target, outtype):
        derivatives = derivatives.filter(file_type=file_type)
    return derivatives.order_by("created_at", "pk").first()


def conversion_under_way(source: LanguageModel, target: str, outtype: str | None = None) -> Job | None:
    """A queued or running job already converting ``source`` into ``target``."""
    jobs = Job.objects.for_org(source.organization).filter(
        kind=CONVERSION_JOBS[target], params__model=source.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    )
    if target == ModelFormat.GGUF and outtype:
        jobs = jobs.filter(params__outtype=outtype)
    return jobs.order_by("created_at", "pk").first()


def check_convertible(model: LanguageModel, target: str) -> None:
    """Raise ActionError unless ``model`` can be converted into ``target`` now."""
    label = ModelFormat(target).label
    if model.format == target:
        raise ActionError(f"{model} is already {label}; there is nothing to convert.", field="format")
    if model.status != ModelStatus.READY:
        raise ActionError(
            f"{model} is {model.get_status_display().lower()}; convert it once its inventory has finished "
            "and it is ready.",
            code="conflict",
        )
    if not model.can("analysis"):
        reason = (model.capabilities.get("reasons") or {}).get("analysis") or "its architecture is not known"
        raise ActionError(
            f"{model} cannot be converted: only complete llama-family models are converted, and {reason}.",
            field="format",
        )


def do_request_conversion(
    model: LanguageModel, user: User, target: str, *, outtype: str | None = None, enqueue: bool = True
) -> ConversionRequest:
    """Ask for ``model`` in the ``target`` format (``gguf`` or ``safetensors``; ``hf`` is accepted).

    Returns the derivative when one exists (ready or being inventoried), else the job making it
    (one already queued or running, or a new one). ``outtype`` (GGUF only: f32, f16, bf16, q8_0)
    defaults to f16. Raises ActionError when the model cannot be converted.
    """
    target = target_format(target)
    if target == ModelFormat.GGUF:
        outtype = (outtype or DEFAULT_GGUF_OUTTYPE).lower()
        if outtype not in GGUF_OUTTYPES:
            raise ActionError(
                f"The GGUF type must be one of {', '.join(GGUF_OUTTYPES)}, not “{outtype}”.", field="outtype"
            )
    elif outtype:
        raise ActionError(
            "`outtype` applies to GGUF conversions only; a Hugging Face copy is float32.", field="outtype"
        )
    check_convertible(model, target)
    if derivative := existing_derivative(model, target, outtype):
        return ConversionRequest(derivative, None)
    if job := conversion_under_way(model, target, outtype):
        return ConversionRequest(None, job)
    params = {"model": model.pk} | ({"outtype": outtype} if target == ModelFormat.GGUF else {})
    job = do_enqueue_job(
        model.organization, CONVERSION_JOBS[target], user=user, project=model.project, params=params, enqueue=enqueue
    )
    return ConversionRequest(None, job)


def torch_copy(teacher: LanguageModel, user: User | None = None) -> LanguageModel:
    """The Hugging Face copy of ``teacher`` that torch loads (analysis, distillation): the teacher itself, or its
    converted copy. When there is none yet, ActionError saying so; with ``user``, the conversion is started for
    them first (so the person's next try finds the copy, instead of having to go and ask for it)."""
    if teacher.format == ModelFormat.SAFETENSORS:
        return teacher
    copy = existing_derivative(teacher, ModelFormat.SAFETENSORS)
    if copy is not None and copy.status == ModelStatus.READY:
        return copy
    if copy is not None or conversion_under_way(teacher, ModelFormat.SAFETENSORS):
        raise ActionError(
            f"{teacher.name}'s Hugging Face copy is still being made; start once it is ready.",
            field="teacher",
            code="conflict",
        )
    if user is not None and teacher.status == ModelStatus.READY:
        request = do_request_conversion(teacher, user, ModelFormat.SAFETENSORS)
        if request.derivative is not None and request.derivative.status == ModelStatus.READY:
            return request.derivative
        raise ActionError(
            f"{teacher.name} is a GGUF file; analysis and distillation run in torch on a Hugging Face copy, which is "
            "being made now (see Jobs; a few minutes for a small model). Start again once it is ready.",
            field="teacher",
            code="conflict",
        )
    raise ActionError(
        f"{teacher.name} is a GGUF file; analysis and distillation run in torch on its Hugging Face copy. "
        "Convert it on its page (“Convert to Hugging Face”), then start again.",
        field="teacher",
    )
