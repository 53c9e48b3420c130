"""GGUF <-> Hugging Face conversion on tiny real llamas, checked against llama.cpp's own logits.

How the logits are compared, and why these tolerances:

* The tiny models' Q/K weights are scaled up (:func:`sharp_weights`) so that attention is sharp:
  with the default 0.02 weights attention is almost uniform, and a model whose rotary layout is
  wrong (Q/K rows not permuted for llama.cpp) gives nearly the same logits as a right one
  (5e-3 apart). With sharp attention such a model is ~0.5 away and its argmax changes
  (checked by :func:`test_a_wrong_rotary_layout_is_caught`).
* llama.cpp runs with an F32 KV cache (its default is F16), so on F32 weights it computes in
  float32 like torch: the logits agree to ~4e-7 (summation order only). ``ATOL["F32"]`` = 1e-5.
* On F16 weights llama.cpp also rounds the activations to F16 inside its matrix products, and
  an F16 GGUF of float32 weights rounds the weights: up to ~8e-4 here. ``ATOL["F16"]`` = 3e-3.
* Both are far below the 0.5 of a real conversion error. The argmax must agree wherever the
  reference's top two logits are further apart than twice the tolerance (a near-tie may flip).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from projects.engine.conversion import (
    CONVERTER_MARKER,
    ConversionError,
    converter_environment,
    extract_converter,
    find_converter,
    gguf_to_hf,
    hf_to_gguf,
    llama_cpp_version,
)
from projects.engine.formats import inspect_model
from tests.support.tiny_models import TinyLlamaConfig, llama_weights, write_gguf_llama, write_hf_llama

CONFIG = TinyLlamaConfig(n_layers=2)
#: BOS, then byte-fallback and letter pieces of the tiny vocabulary (ids from tests.support.tiny_models).
TOKENS = [1, 259 + 7, 259 + 4, 259 + 11, 259 + 11, 259 + 14, 285, 259, 286, 259 + 19, 100, 42, 2, 259 + 25]
#: Largest |logit difference| allowed between llama.cpp and torch, by the GGUF's tensor type (see above).
ATOL = {"F32": 1e-5, "F16": 3e-3}
GGML_TYPE_F32 = 0


def sharp_weights(seed: int) -> dict[str, np.ndarray]:
    """Tiny llama weights with Q/K scaled x10: sharp attention, so the rotary layout shows in the logits."""
    weights = llama_weights(CONFIG, seed=seed)
    return {name: w * 10 if ".q_proj." in name or ".k_proj." in name else w for name, w in weights.items()}


def llama_cpp_logits(gguf: Path, tokens: list[int]) -> np.ndarray:
    """(T, vocab) logits llama.cpp computes for ``tokens`` (one pass, no sampling)."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(gguf),
        n_ctx=64,
        n_batch=64,
        logits_all=True,
        verbose=False,
        seed=0,
        n_threads=2,
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
    )
    try:
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm.close()


def torch_logits(folder: Path, tokens: list[int]) -> np.ndarray:
    """(T, vocab) logits of transformers' model loaded from a Hugging Face folder."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True).eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


def assert_logits_agree(ours: np.ndarray, reference: np.ndarray, atol: float) -> float:
    """Max |difference| within ``atol``; same argmax wherever the reference is not a near-tie. Returns the max."""
    assert ours.shape == reference.shape
    diff = float(np.abs(ours - reference).max())
    assert diff <= atol, f"max |logit difference| {diff:.2e} > {atol:.0e} (logits up to {np.abs(reference).max():.3f})"
    top2 = np.sort(reference, axis=-1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * atol
    assert clear.sum() >= len(reference) // 2
    assert (ours.argmax(-1) == reference.argmax(-1))[clear].all()
    return diff


@pytest.mark.parametrize("tensor_type", ["F32", "F16"])
def test_gguf_to_hf_matches_llama_cpp(tmp_path, tensor_type):
    weights = sharp_weights(seed=3)
    gguf = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG, weights, tensor_type=tensor_type)
    steps: list[tuple[float, str]] = []
    out = gguf_to_hf(gguf, tmp_path / "hf", lambda fraction, message: steps.append((fraction, message)))

    assert out == tmp_path / "hf"
    assert {p.name for p in out.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    info = inspect_model(out)
    assert info.capabilities.analysis and info.format == "safetensors"
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(steps) >= 5

    # The weights are the source weights again (exactly for F32; F16 rounding otherwise), Q/K un-permuted.
    saved = load_file(out / "model.safetensors")
    for name, weight in weights.items():
        expected = weight if tensor_type == "F32" or weight.ndim == 1 else weight.astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(saved[name], expected, err_msg=name)

    assert_logits_agree(torch_logits(out, TOKENS), llama_cpp_logits(gguf, TOKENS), ATOL[tensor_type])


def test_a_wrong_rotary_layout_is_caught(tmp_path, monkeypatch):
    """The comparison's power: a GGUF whose Q/K rows were not permuted for llama.cpp is far off."""
    from tests.support import tiny_models

    weights = sharp_weights(seed=3)
    reference = torch_logits(
        gguf_to_hf(write_gguf_llama(tmp_path / "ok.gguf", CONFIG, weights), tmp_path / "hf"), TOKENS
    )
    monkeypatch.setattr(tiny_models, "permute_for_llama_cpp", lambda weight, n_heads: weight)
    wrong = llama_cpp_logits(write_gguf_llama(tmp_path / "wrong.gguf", CONFIG, weights), TOKENS)
    assert np.abs(wrong - reference).max() > 100 * ATOL["F16"]
    assert (wrong.argmax(-1) != reference.argmax(-1)).any()


def test_gguf_to_hf_tokenizer_matches_llama_cpp(tmp_path):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    gguf = write_gguf_llama(tmp_path / "tiny.gguf", CONFIG)
    out = gguf_to_hf(gguf, tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    llm = Llama(model_path=str(gguf), n_ctx=64, verbose=False, vocab_only=True)
    try:
        for text in ("hello at a cat", "a tea, 42!"):
            assert tokenizer(text).input_ids == llm.tokenize(text.encode()), text
    finally:
        llm.close()


@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_hf_to_gguf_with_the_official_converter_matches_torch(tmp_path, llama_converter, outtype):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, sharp_weights(seed=4), shards=2)
    steps: list[tuple[float, str]] = []
    gguf = hf_to_gguf(
        folder,
        tmp_path / "out" / "tiny.gguf",
        lambda fraction, message: steps.append((fraction, message)),
        outtype=outtype,
        converter=llama_converter,
    )

    info = inspect_model(gguf)
    assert info.architecture == "llama" and info.capabilities.chat and info.capabilities.analysis
    assert info.file_type == {"f32": "ALL_F32", "f16": "MOSTLY_F16"}[outtype]
    assert [p.name for p in gguf.parent.iterdir()] == ["tiny.gguf"]  # the partial file was renamed
    messages = [m for _, m in steps]
    assert any(m.startswith("Preparing tensors: 21 of 21") for m in messages)
    assert any(m.startswith("Writing the GGUF") for m in messages) and steps[-1][0] == 1.0

    assert_logits_agree(llama_cpp_logits(gguf, TOKENS), torch_logits(folder, TOKENS), ATOL[outtype.upper()])


def test_converter_runs_on_its_vendored_gguf_package(llama_converter):
    """The converter imports the gguf-py it ships with, not the environment's gguf (left untouched)."""
    import gguf as installed

    code = "import gguf, sys; print(gguf.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=converter_environment(llama_converter),
        capture_output=True,
        text=True,
        check=True,
        cwd=llama_converter.parent,
    )
    assert Path(done.stdout.strip()).is_relative_to(llama_converter / "gguf-py")
    assert not Path(installed.__file__).is_relative_to(llama_converter)
    marker = json.loads((llama_converter / CONVERTER_MARKER).read_text())
    assert marker["version"] == llama_cpp_version() == llama_converter.name.removeprefix("llama.cpp-")


def test_converter_extraction_is_idempotent_and_bounded(tmp_path, llama_converter):
    import tarfile

    version = llama_cpp_version()
    sdist = tmp_path / f"llama_cpp_python-{version}.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:  # a stand-in sdist made of the extracted converter
        for path in sorted(llama_converter.rglob("*")):
            if path.is_file() and path.name != CONVERTER_MARKER and "__pycache__" not in path.parts:
                archive.add(
                    path, f"llama_cpp_python-{version}/vendor/llama.cpp/{path.relative_to(llama_converter).as_posix()}"
                )
        archive.add(llama_converter / "LICENSE", f"llama_cpp_python-{version}/vendor/llama.cpp/CMakeLists.txt")
    folder = extract_converter(sdist, tmp_path / "tools")
    assert find_converter(tmp_path / "tools") == folder
    assert not (folder / "CMakeLists.txt").exists()  # only what the converter needs
    assert (folder / "conversion" / "llama.py").is_file() and (folder / "gguf-py" / "gguf" / "gguf_writer.py").is_file()
    assert extract_converter(tmp_path / "missing.tar.gz", tmp_path / "tools") == folder  # present: nothing read

    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(ConversionError, match="not a llama-cpp-python"):
        extract_converter(empty, tmp_path / "other")
    assert not list((tmp_path / "other").iterdir())
    with pytest.raises(ConversionError, match="fetch-llama-converter"):
        find_converter(tmp_path / "nowhere")


def test_refusals(tmp_path, llama_converter):
    other = write_gguf_llama(tmp_path / "other.gguf", CONFIG, architecture="gpt2")
    with pytest.raises(ConversionError, match="llama-family"):
        gguf_to_hf(other, tmp_path / "hf")
    hf_other = write_hf_llama(tmp_path / "gpt2", CONFIG, architecture="GPT2LMHeadModel", model_type="gpt2", shards=1)
    with pytest.raises(ConversionError, match="llama-family"):
        hf_to_gguf(hf_other, tmp_path / "x.gguf", outtype="f16", converter=llama_converter)
    folder = write_hf_llama(tmp_path / "hf-ok", CONFIG, shards=1)
    with pytest.raises(ConversionError, match="expected a gguf model"):
        gguf_to_hf(folder, tmp_path / "hf2")
    with pytest.raises(ConversionError, match="outtype"):
        hf_to_gguf(folder, tmp_path / "y.gguf", outtype="q4_0", converter=llama_converter)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConversionError, match="already exists"):
        gguf_to_hf(write_gguf_llama(tmp_path / "ok.gguf", CONFIG), tmp_path / "taken")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failing_converter_leaves_nothing(tmp_path, llama_converter):
    folder = write_hf_llama(tmp_path / "hf", CONFIG, shards=1)
    fake = tmp_path / "fake-converter"
    (fake / "gguf-py").mkdir(parents=True)
    (fake / "convert_hf_to_gguf.py").write_text(
        "import sys\nprint('INFO:hf-to-gguf:Loading model')\n"
        "open(sys.argv[3], 'wb').write(b'GGUF half')\nsys.exit('boom: out of memory')\n"
    )
    with pytest.raises(ConversionError, match="boom: out of memory"):
        hf_to_gguf(folder, tmp_path / "out" / "m.gguf", outtype="f16", converter=fake)
    assert not list((tmp_path / "out").iterdir())

    (fake / "convert_hf_to_gguf.py").write_text(
        "import time\nprint('INFO:hf-to-gguf:Loading model', flush=True)\ntime.sleep(60)\n"
    )
    with pytest.raises(ConversionError, match="longer than 1 s"):
        hf_to_gguf(folder, tmp_path / "out" / "m.gguf", outtype="f16", converter=fake, timeout=1)

    # A progress callback that raises (a cancelled job) stops the converter at once.
    pid_file = tmp_path / "pid"
    (fake / "convert_hf_to_gguf.py").write_text(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "print('INFO:hf-to-gguf:token_embd.weight,          torch.float32 --> F16, shape = {64, 288}', flush=True)\n"
        "time.sleep(60)\n"
    )

    class Stop(Exception):
        pass

    def cancel(fraction, message):
        if message.startswith("Preparing tensors"):
            raise Stop

    with pytest.raises(Stop):
        hf_to_gguf(folder, tmp_path / "out" / "m.gguf", cancel, outtype="f16", converter=fake)
    assert not Path(f"/proc/{pid_file.read_text()}").exists()  # killed and reaped
    assert not list((tmp_path / "out").iterdir())


def test_gguf_to_hf_stops_when_progress_raises(tmp_path):
    """A cancelled job's progress callback raises: that exception comes out as it is, nothing is left."""

    class Stop(Exception):
        pass

    def cancel(fraction, message):
        if message.startswith("Dequantizing tensors"):
            raise Stop

    with pytest.raises(Stop):
        gguf_to_hf(write_gguf_llama(tmp_path / "tiny.gguf", CONFIG), tmp_path / "out" / "hf", cancel)
    assert not list((tmp_path / "out").iterdir())
