"""Read, validate and inventory uploaded teacher models (GGUF files, Hugging Face safetensors folders).

One module per concern: ``sniff`` (what a file is), ``reader`` (bounded reads), ``gguf``, ``safetensors``,
``hf_folder``, ``inspect`` (the entry point), ``archive`` (zipped folders), ``hashing``, ``compare``;
``records`` (what they return), ``errors``, ``limits``.

Everything here reads *headers* only; tensor bytes are touched in exactly one place,
:func:`hash_tensors`, which streams them through SHA-256 in bounded chunks. Nothing is ever
unpickled: PyTorch pickle checkpoints are recognised (by name and by content) and refused.

Entry points:

* :func:`detect_format` — what an arbitrary upload is, by magic bytes.
* :func:`inspect_model` — validate a GGUF file or safetensors folder and return a :class:`ModelInfo`
  (metadata, :class:`Capabilities`, one :class:`TensorEntry` per tensor; hashes on request).
* :func:`hash_tensors` — add SHA-256 per tensor to an inventory, with progress.
* :func:`compare_models` — what two hashed inventories share (:class:`ModelComparison`).
* :func:`plan_model_archive` — which files of a zipped model folder make the model (from the zip's
  listing, :mod:`projects.engine.archives`; pickles refused, other files left out).

Every problem with an input raises :class:`ModelFormatError` (a ``ValueError``) whose message names the
file, says what is wrong and what to do about it.

Shapes: GGUF lists a tensor's dimensions fastest-varying first (``ne[0]`` is the length of a row), which
is the reverse of PyTorch/numpy order — llama.cpp's ``output.weight`` with ``ne = [d_model, vocab]`` is
PyTorch's ``lm_head.weight`` of shape ``(vocab, d_model)``. Inventories always use **PyTorch order**, so
shapes from the two formats compare directly.

No Django imports: the package is importable and testable on its own.
"""

from projects.engine.tensor_names import COMPONENTS

from .archive import ModelArchive, plan_model_archive
from .compare import ModelComparison, compare_models, compare_tensors
from .errors import ModelFormatError, PickleCheckpointError, UnsupportedModelError
from .hashing import hash_tensors
from .inspect import inspect_model
from .limits import MODEL_FILE_SUFFIXES, PHASES
from .records import Capabilities, ModelInfo, TensorEntry
from .sniff import detect_format

__all__ = [
    "COMPONENTS",
    "Capabilities",
    "MODEL_FILE_SUFFIXES",
    "ModelArchive",
    "ModelComparison",
    "ModelFormatError",
    "ModelInfo",
    "PHASES",
    "PickleCheckpointError",
    "TensorEntry",
    "UnsupportedModelError",
    "compare_models",
    "compare_tensors",
    "detect_format",
    "hash_tensors",
    "inspect_model",
    "plan_model_archive",
]
