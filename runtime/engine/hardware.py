"""What this machine offers an inference backend: cores, GPU offload, free VRAM."""

from __future__ import annotations

import shutil
import subprocess


def gpu_offload_supported() -> bool:
    """Whether the installed llama.cpp was built with a GPU backend (CUDA, Metal, Vulkan...)."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except (ImportError, AttributeError):  # pragma: no cover
        return False


def free_vram_bytes() -> int | None:
    """Free memory of the first NVIDIA GPU, or None when there is none (or nvidia-smi is absent)."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return int(out.split()[0]) * 2**20
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        return None


def auto_gpu_layers(file_size: int, n_layers: int | None, free_vram: int | None, offload_supported: bool) -> int:
    """How many layers to offload: as many as fit in 90 % of the free VRAM; 0 without a GPU.

    Layers are taken as equal slices of the file; the output layer counts as one more.
    """
    if not offload_supported or not free_vram or not n_layers:
        return 0
    per_layer = file_size / (n_layers + 1)
    fit = int(free_vram * 0.9 // per_layer) if per_layer else 0
    return -1 if fit >= n_layers + 1 else max(0, fit)
