"""Zipped model folders: which files make the model (from the zip's listing; pickles refused)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import NamedTuple

from projects.engine.archives import ArchiveMember, strip_top_folder

from .errors import ModelFormatError, _pickle_refusal
from .hf_folder import _NO_WEIGHTS_ADVICE, _missing_config
from .limits import MODEL_FILE_SUFFIXES, PICKLE_EXTENSIONS


class ModelArchive(NamedTuple):
    """What of a zipped model folder becomes the model (see :func:`plan_model_archive`)."""

    files: list[ArchiveMember]
    """The model's files, their paths inside the model folder (the zip's top folder dropped)."""
    left_out: list[str]
    """Other files (README.md, images…), as the zip names them: not part of the model, never unpacked."""
    folder: str
    """The one top folder the zip wrapped the model in, or ""."""


def plan_model_archive(members: Sequence[ArchiveMember], label: str) -> ModelArchive:
    """Decide from a zip's listing alone (nothing inflated) whether it can hold a model, and which files.

    The zip holds a Hugging Face folder (config.json, tokenizer files, ``.safetensors`` weights and
    their index) or a GGUF file, at its top or inside one folder (dropped). Pickle checkpoints
    anywhere in it refuse the whole zip (:class:`PickleCheckpointError`, never opened); files that
    are not model files (:data:`MODEL_FILE_SUFFIXES`) are left out. The headers themselves are
    checked by :func:`inspect_model` once the files are unpacked.
    """

    def suffix(member: ArchiveMember) -> str:
        return PurePosixPath(member.path).suffix.lower()

    folder, members = strip_top_folder(members)
    pickles = [m.path for m in members if suffix(m) in PICKLE_EXTENSIONS]
    if pickles:
        more = f" and {len(pickles) - 3} more" if len(pickles) > 3 else ""
        raise _pickle_refusal(
            label,
            f"the zip holds PyTorch pickle checkpoints ({', '.join(pickles[:3])}{more}); leave them out of the zip",
        )
    files = [m for m in members if suffix(m) in MODEL_FILE_SUFFIXES]
    left_out = [m.info.filename for m in members if suffix(m) not in MODEL_FILE_SUFFIXES]
    top = {m.path for m in files if "/" not in m.path}
    weights = [m.path for m in files if suffix(m) in (".safetensors", ".gguf")]
    if not weights:
        raise ModelFormatError(
            label, f"the zip holds no .safetensors or .gguf files: {_NO_WEIGHTS_ADVICE}, or a zip of one"
        )
    if not any("/" not in path for path in weights):
        raise ModelFormatError(
            label,
            f"the weights are in a subfolder ({weights[0]}): zip the folder that holds config.json and the weights, "
            "so that they are at the top of the zip (or inside one folder)",
        )
    if any(path.endswith(".safetensors") for path in weights) and "config.json" not in top:
        nested = [m.path for m in files if m.path.endswith("/config.json")]
        if nested:
            raise ModelFormatError(
                label,
                f"missing config.json at the top of the zip (there is {nested[0]}): zip the model's folder itself",
            )
        raise _missing_config(label, top)
    return ModelArchive(files, left_out, folder)
