"""The errors of model files: one class per kind, each message naming the file, what is wrong and what to do."""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# Errors


class ModelFormatError(ValueError):
    """An uploaded model file is unreadable, inconsistent or refused; the message says what to do."""

    def __init__(self, file: str, problem: str):
        self.file = file
        """The file (or folder) the problem is in, as the person knows it."""
        self.problem = problem
        """What is wrong and what to do, without the file name."""
        super().__init__(f"{file}: {problem}")


class PickleCheckpointError(ModelFormatError):
    """A PyTorch pickle checkpoint (or something that looks like one): refused, never opened."""


class UnsupportedModelError(ModelFormatError):
    """A valid model that cannot be used for the requested phase (see :meth:`ModelInfo.require`)."""


def _pickle_refusal(label: str, why: str) -> PickleCheckpointError:
    return PickleCheckpointError(
        label,
        f"refused: {why}. PyTorch pickle checkpoints can run code when loaded, so this platform never "
        "opens them; convert to safetensors (e.g. `model.save_pretrained(out_dir, safe_serialization=True)`) "
        "and upload that folder, or upload a GGUF file.",
    )
