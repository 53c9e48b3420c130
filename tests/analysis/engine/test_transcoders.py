"""Sparse coders: the skip transcoder and its baselines, normalisation, persistence, training, dictionary recovery."""

from __future__ import annotations

import json

import pytest
import torch

from analysis.engine.capture import CaptureConfig, capture_mlp_activations
from analysis.engine.shards import CaptureReader
from analysis.engine.training import (
    CoderTrainer,
    SignSGD,
    TrainingConfig,
    default_lr,
    normalization_stats,
    train_on_tensors,
    train_sparse_coders,
    train_sparse_coders_online,
)
from analysis.engine.transcoders import (
    CoderConfig,
    SkipTranscoder,
    SparseAutoencoder,
    SparseCoder,
    Transcoder,
)


def random_coder(kind: str, seed: int = 0) -> SparseCoder:
    torch.manual_seed(seed)
    coder = SparseCoder.create(CoderConfig(d_in=8, kind=kind, expansion=4, k=3, layer=1), seed=seed)
    with torch.no_grad():
        coder.W_dec.normal_()  # a transcoder's decoder starts at zero; these tests want a working one
        coder.normalize_decoder_()
        coder.b_enc.normal_()
        coder.b_dec.normal_()
        if coder.W_skip is not None:
            coder.W_skip.normal_()
    coder.set_normalization(torch.randn(8), 2.5, torch.randn(8), 0.3)
    return coder


def reference_forward(coder: SparseCoder, x: torch.Tensor) -> torch.Tensor:
    """f(x) written out densely: W_dec·topk(ReLU(W_enc·x + b_enc)) + W_skip·x + b_dec, in normalised space."""
    xn = (x - coder.in_mean) / coder.in_scale
    pre = torch.relu(xn @ coder.W_enc.T + coder.b_enc)
    keep = torch.zeros_like(pre).scatter_(1, pre.topk(coder.k, dim=1).indices, 1.0)
    yn = (pre * keep) @ coder.W_dec + coder.b_dec
    if coder.W_skip is not None:
        yn = yn + xn @ coder.W_skip.T
    return yn * coder.out_scale + coder.out_mean


@pytest.mark.parametrize("kind", ["skip_transcoder", "transcoder", "sae"])
def test_forward_matches_the_formula_and_folded_weights(kind):
    coder = random_coder(kind)
    x = torch.randn(50, 8)
    with torch.no_grad():
        out = coder(x)
        torch.testing.assert_close(out, reference_forward(coder, x))
        w = coder.folded_weights()
        pre = torch.relu(x @ w["W_enc"].T + w["b_enc"])
        keep = torch.zeros_like(pre).scatter_(1, pre.topk(coder.k, dim=1).indices, 1.0)
        folded = (pre * keep) @ w["W_dec"] + w["b_dec"] + (x @ w["W_skip"].T if "W_skip" in w else 0)
        torch.testing.assert_close(folded, out, atol=1e-5, rtol=1e-5)
    assert ("W_skip" in w) == (kind == "skip_transcoder")
    assert w["W_enc"].shape == w["W_dec"].shape == (32, 8)


def test_classes_and_what_they_read():
    assert isinstance(random_coder("skip_transcoder"), SkipTranscoder)
    assert isinstance(random_coder("transcoder"), Transcoder)
    sae = random_coder("sae")
    assert isinstance(sae, SparseAutoencoder)
    mlp_in, mlp_out = torch.randn(4, 8), torch.randn(4, 8)
    torch.testing.assert_close(sae.replace_mlp(mlp_in, mlp_out), sae(mlp_out))
    tc = random_coder("transcoder")
    torch.testing.assert_close(tc.replace_mlp(mlp_in, mlp_out), tc(mlp_in))
    with pytest.raises(ValueError, match="kind"):
        CoderConfig(d_in=8, kind="crosscoder")
    with pytest.raises(ValueError, match="k must be"):
        CoderConfig(d_in=8, expansion=1, k=9)


def test_save_and_load_round_trip(tmp_path):
    coder = random_coder("skip_transcoder")
    coder.save(tmp_path / "tc", extra={"fvu": 0.1})
    config = json.loads((tmp_path / "tc" / "config.json").read_text())
    assert config["kind"] == "skip_transcoder" and config["d_sae"] == 32 and config["layer"] == 1
    loaded = SparseCoder.load(tmp_path / "tc")
    assert isinstance(loaded, SkipTranscoder)
    x = torch.randn(20, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), coder(x))
    assert float(loaded.in_scale) == 2.5


def test_auxk_loss_trains_dead_latents():
    coder = random_coder("transcoder")
    xn, yn = torch.randn(64, 8), torch.randn(64, 8)
    dead = torch.zeros(32, dtype=torch.bool)
    dead[16:] = True
    out = coder.forward_train(xn, yn, dead_mask=dead, k_aux=4)
    assert out.auxk_loss > 0
    out.auxk_loss.backward()
    # Only dead latents receive gradient from the auxiliary loss.
    assert coder.W_enc.grad[16:].abs().sum() > 0
    assert coder.W_enc.grad[:16].abs().sum() == 0
    assert coder.forward_train(xn, yn).auxk_loss == 0


def synthetic_dictionary(n: int, seed: int = 0):
    """Sparse codes over 48 known features: x = codes·E (input side), y = codes·D + x·A (output side)."""
    g = torch.Generator().manual_seed(seed)
    d, n_features, active = 24, 48, 3
    enc_dirs = torch.nn.functional.normalize(torch.randn(n_features, d, generator=g), dim=1)
    dec_dirs = torch.nn.functional.normalize(torch.randn(n_features, d, generator=g), dim=1)
    skip = 0.3 * torch.randn(d, d, generator=g) / d**0.5
    codes = torch.zeros(n, n_features)
    idx = torch.stack([torch.randperm(n_features, generator=g)[:active] for _ in range(n)])
    codes.scatter_(1, idx, 1.0 + torch.rand(n, active, generator=g))
    x = codes @ enc_dirs
    y = codes @ dec_dirs + x @ skip.T
    return x, y, dec_dirs, codes


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n_a, n_b) Pearson correlation of the columns of two (N, ·) matrices."""
    a = (a - a.mean(0)) / a.std(0).clamp_min(1e-8)
    b = (b - b.mean(0)) / b.std(0).clamp_min(1e-8)
    return a.T @ b / (a.shape[0] - 1)


@pytest.mark.parametrize(("optimizer", "lr"), [("signum", None)])
def test_transcoders_recover_a_known_sparse_dictionary(optimizer, lr):
    x, y, true_dirs, codes = synthetic_dictionary(8192)
    fvus = {}
    matched = {}
    for kind in ("transcoder", "skip_transcoder"):
        coder = SparseCoder.create(CoderConfig(d_in=24, kind=kind, expansion=4, k=3), seed=0)
        curve = []
        train_on_tensors(
            coder,
            x,
            y,
            n_tokens=100_000,
            batch_size=256,
            lr=lr,
            optimizer=optimizer,
            on_step=lambda curve=curve, **m: curve.append(m),
        )
        assert curve[-1]["fvu"] < curve[0]["fvu"]
        with torch.no_grad():
            fvus[kind] = float((coder(x) - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
            # Every true feature's best-matching latent, by activation over the same samples.
            matched[kind] = correlation(codes, coder.feature_activations(x)).max(dim=1).values
            directions = torch.nn.functional.normalize(coder.decoder_directions(), dim=1)
            cos = (true_dirs @ directions.T).max(dim=1).values
        norms = coder.W_dec.norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))
        if kind == "transcoder":
            # Without a skip, the decoder must hold the true output directions themselves.
            assert float((cos > 0.9).float().mean()) == 1.0, cos
            assert float((matched[kind] > 0.9).float().mean()) > 0.9, matched[kind]
    assert fvus["transcoder"] < 0.15 and fvus["skip_transcoder"] < 0.1
    # The skip term takes the linear part (y has one): lower error at the same budget, and the latents still
    # track most features (those the skip can predict linearly need no latent).
    assert fvus["skip_transcoder"] < fvus["transcoder"]
    # (0.73 of the 48 here; the rest the skip explains.)
    assert float((matched["skip_transcoder"] > 0.9).float().mean()) > 0.7, matched["skip_transcoder"]


def test_training_from_shards_side_by_side(model, docs, tmp_path):
    capture_mlp_activations(
        model,
        docs * 4,
        tmp_path / "cap",
        CaptureConfig(n_tokens=1100, hookpoints=["model.layers.0.mlp", "model.layers.2.mlp"], tokens_per_shard=256),
    )
    steps = []
    progress = []
    config = TrainingConfig(
        kinds=["skip_transcoder", "transcoder", "sae"], expansion=2, k=4, batch_size=64, n_tokens=3000,
        held_out_tokens=200, lr=3e-3,
    )  # fmt: skip
    result = train_sparse_coders(
        tmp_path / "cap", config, on_step=lambda **m: steps.append(m), progress=lambda d, t, **m: progress.append(d)
    )
    assert set(result.coders) == {(layer, kind) for layer in (0, 2) for kind in config.kinds}
    assert result.tokens == 3000 and progress[-1] == 3000
    assert result.train_range == (0, 900) and result.held_out_range == (900, 1100)
    assert result.coders[0, "skip_transcoder"].config.hookpoint == "model.layers.0.mlp"
    first = {(s["layer"], s["kind"]): s["fvu"] for s in steps if s["step"] == 0}
    for key, metrics in result.final.items():
        assert metrics["fvu"] < first[key]
    assert {s["kind"] for s in steps} == set(config.kinds)
    # Stopping early returns the coders trained so far.
    stopped = train_sparse_coders(tmp_path / "cap", config, should_stop=lambda: True)
    assert stopped.stopped and stopped.steps == 1
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_sparse_coders(tmp_path / "cap", TrainingConfig(held_out_tokens=1090, batch_size=64))


def test_online_training_with_the_forward_pass_in_the_loop(model, docs, tmp_path):
    capture_config = CaptureConfig(n_tokens=1100, hookpoints=["model.layers.1.mlp"], seq_len=32, batch_size=4)
    config = TrainingConfig(kinds=["skip_transcoder", "sae"], expansion=2, k=4, batch_size=64, held_out_tokens=100,
                            lr=3e-3, norm_tokens=300)  # fmt: skip
    steps = []
    result = train_sparse_coders_online(model, docs * 4, capture_config, config, on_step=lambda **m: steps.append(m))
    assert set(result.coders) == {(1, "skip_transcoder"), (1, "sae")}
    assert result.held_out_range == (0, 100) and result.train_range == (100, 100 + result.tokens)
    assert result.tokens == 1000 - 1000 % 64 and not result.stopped
    first = {s["kind"]: s["fvu"] for s in steps if s["step"] == 0}
    assert all(result.final[1, kind]["fvu"] < first[kind] for kind in first)
    # Its normalisation is that of the same tokens read back from a capture.
    capture_mlp_activations(model, docs * 4, tmp_path / "cap", capture_config)
    stats = normalization_stats(CaptureReader(tmp_path / "cap"), [1], 1100, 400)  # tokens [0, 400)
    skip_only = normalization_stats(CaptureReader(tmp_path / "cap"), [1], 100, 100)
    n = 400 - 100
    mean_in = (stats[1][0].mean * 400 - skip_only[1][0].mean * 100) / n
    torch.testing.assert_close(result.coders[1, "skip_transcoder"].in_mean, mean_in.float(), atol=2e-3, rtol=1e-2)
    with pytest.raises(ValueError, match="re-iterable"):
        train_sparse_coders_online(model, iter(docs), capture_config, config)


def test_adam_recovers_the_dictionary_too():
    x, y, true_dirs, _ = synthetic_dictionary(8192)
    coder = SparseCoder.create(CoderConfig(d_in=24, kind="transcoder", expansion=4, k=3), seed=0)
    train_on_tensors(coder, x, y, n_tokens=100_000, batch_size=256, lr=1e-2, optimizer="adam")
    with torch.no_grad():
        fvu = float((coder(x) - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
        cos = (true_dirs @ torch.nn.functional.normalize(coder.decoder_directions(), dim=1).T).max(dim=1).values
    assert fvu < 0.15 and float((cos > 0.9).float().mean()) == 1.0, (fvu, cos)


def test_a_transcoder_starts_with_a_zero_decoder_and_an_autoencoder_tied():
    transcoder = SparseCoder.create(CoderConfig(d_in=16, kind="skip_transcoder", expansion=2, k=2), seed=1)
    assert transcoder.W_dec.abs().sum() == 0 and transcoder.W_skip.abs().sum() == 0
    assert transcoder.W_enc.abs().max() <= 1 / 16**0.5 and transcoder.W_enc.std() > 0
    sae = SparseCoder.create(CoderConfig(d_in=16, kind="sae", expansion=2, k=2), seed=1)
    torch.testing.assert_close(sae.W_enc, sae.W_dec)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    # One step gives the decoder rows of the latents that fired a direction, of unit norm.
    trainer = CoderTrainer(transcoder, lr=1e-2)
    trainer.step(torch.randn(64, 16), torch.randn(64, 16))
    norms = transcoder.W_dec.norm(dim=1)
    assert (norms > 0).any() and torch.allclose(norms[norms > 0], torch.ones(int((norms > 0).sum())))


def test_folding_decoder_norms_keeps_each_latents_contribution():
    coder = random_coder("skip_transcoder")
    with torch.no_grad():
        coder.W_dec.mul_(torch.linspace(0.5, 2.0, coder.d_sae)[:, None])
    coder.config.k = coder.d_sae  # every positive latent kept: no top-k choice to change
    x = torch.randn(16, 8)
    before = coder(x)
    coder.fold_decoder_norms_()
    torch.testing.assert_close(coder.W_dec.norm(dim=1), torch.ones(coder.d_sae))
    torch.testing.assert_close(coder(x), before, rtol=1e-5, atol=1e-5)


def test_signum_steps_by_the_sign_and_finishes_on_the_averaged_weights():
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.0]))
    param.grad = torch.tensor([3.0, -0.01, 0.0])
    SignSGD([param], lr=0.5).step()
    torch.testing.assert_close(param.detach(), torch.tensor([0.5, -1.5, 0.0]))
    assert default_lr(2**14, "signum") == pytest.approx(5e-3) and default_lr(4 * 2**14, "adam") == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="not supported"):
        TrainingConfig(optimizer="sgd")
    # Schedule-free: the weights it hands back are the averaged iterate, not the last one stepped on.
    coder = random_coder("transcoder")
    trainer = CoderTrainer(coder, lr=1e-2, optimizer="signum")
    xs, ys = torch.randn(64, 8), torch.randn(64, 8)
    for _ in range(5):
        trainer.step(xs, ys)
    stepped = coder.W_enc.detach().clone()
    trainer.finish()
    assert not torch.allclose(coder.W_enc, stepped)
    torch.testing.assert_close(coder.W_dec.norm(dim=1), torch.ones(coder.d_sae))
    assert not coder.training
