"""Student recipes: what of the teacher a student keeps, and how it is healed — a validated, versioned document.

A recipe keeps whole decoder layers (each dropped one with its reason), per kept layer a set of KV groups (their
query heads follow them) and a set of MLP neurons, optionally zeroes weights by Wanda scores (unstructured:
smaller only in the sense of sparsity — a GGUF is neither smaller nor faster for it), and says how the build heals
the student (distillation token budget, sequence length, learning rate, temperature, loss mix) and which
quantized files it writes.

Widths are uniform across layers — every layer keeps the same number of KV groups and MLP neurons — so the
student is a standard ``LlamaForCausalLM`` that llama.cpp's converter and runtime load as ``llama``. (Per-layer
widths need llama.cpp's ``deci`` architecture, which this engine does not write; :func:`validate` says so.)

:func:`propose` turns an importance report into recipes at parameter targets; the extraction strategies of
design document 004 (:func:`by_importance_ratio`, :func:`by_layer_count`, :func:`by_weight_range`) and the
baselines (:func:`same_shapes` for magnitude or generic-text scores, :func:`layer_drop_last`,
:func:`layer_drop_lowest_influence`) each produce one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .families import TeacherArch, parameter_count
from .importance import ImportanceReport

RECIPE_VERSION = 1
#: Bits per weight of llama.cpp's file types (block overheads included), for size estimates.
BITS_PER_WEIGHT = {
    "F16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K_M": 5.69, "Q5_0": 5.5, "Q4_K_M": 4.89, "Q4_0": 4.5,
    "Q3_K_M": 3.91, "Q2_K": 2.96,
}  # fmt: skip
K_QUANTS = frozenset({"Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"})
DEFAULT_QUANT_TYPES = ("Q8_0", "Q5_K_M", "Q4_K_M")
#: Neuron counts are rounded to multiples of this (SIMD-friendly; 256 would keep k-quants on every MLP tensor).
WIDTH_STEP = 64


@dataclass
class Calibration:
    """How the build heals the pruned student by distillation from the teacher."""

    token_budget: int = 61_440
    seq_len: int = 256
    batch_size: int = 4
    learning_rate: float = 1e-3
    #: Linear warm-up over this fraction of the steps (Adam's first steps, at full rate, knock a pruned student
    #: further from its teacher), then cosine decay to ``final_lr_fraction`` of the rate.
    warmup_fraction: float = 0.1
    final_lr_fraction: float = 0.1
    kd_temperature: float = 1.0
    #: Teacher targets kept per token (top-k log-probabilities).
    top_k: int = 64
    #: Weights of the KL to the teacher and of the next-token cross-entropy.
    loss_mix: dict[str, float] = field(default_factory=lambda: {"kl": 1.0, "ce": 0.0})
    checkpoint_every: int = 10


@dataclass
class Recipe:
    name: str
    teacher: TeacherArch
    layers_kept: list[int]
    layers_dropped: list[dict[str, Any]]
    kv_groups_kept: list[list[int]]
    mlp_neurons_kept: list[list[int]]
    objective: str = ""
    wanda_sparsity: float = 0.0
    calibration: Calibration = field(default_factory=Calibration)
    quant_types: list[str] = field(default_factory=lambda: list(DEFAULT_QUANT_TYPES))
    version: int = RECIPE_VERSION

    @property
    def kv_groups(self) -> int:
        return len(self.kv_groups_kept[0]) if self.kv_groups_kept else 0

    @property
    def width(self) -> int:
        return len(self.mlp_neurons_kept[0]) if self.mlp_neurons_kept else 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["teacher"] = self.teacher.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipe:
        if not isinstance(data, dict):
            raise TypeError("a recipe is a JSON object")
        missing = [k for k in ("name", "teacher", "layers_kept", "kv_groups_kept", "mlp_neurons_kept") if k not in data]
        if missing:
            raise KeyError(f"the recipe has no {', '.join(missing)}")
        calibration = data.get("calibration") or {}
        if not isinstance(calibration, dict):
            raise TypeError("calibration is an object")
        unknown = set(calibration) - set(Calibration.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown calibration settings: {', '.join(sorted(unknown))}")
        return cls(
            name=str(data["name"]),
            teacher=TeacherArch.from_json(data["teacher"]),
            layers_kept=list(data["layers_kept"]),
            layers_dropped=list(data.get("layers_dropped") or []),
            kv_groups_kept=[list(g) for g in data["kv_groups_kept"]],
            mlp_neurons_kept=[list(n) for n in data["mlp_neurons_kept"]],
            objective=str(data.get("objective") or ""),
            wanda_sparsity=float(data.get("wanda_sparsity") or 0.0),
            calibration=Calibration(**calibration),
            quant_types=list(data.get("quant_types") or DEFAULT_QUANT_TYPES),
            version=int(data.get("version") or RECIPE_VERSION),
        )


def _indices(values: list[Any], limit: int) -> str | None:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "are not whole numbers"
    if len(set(values)) != len(values):
        return "repeat an index"
    bad = [v for v in values if not 0 <= v < limit]
    return f"include {bad[:5]}, outside 0…{limit - 1}" if bad else None


def validate(recipe: Recipe, arch: TeacherArch) -> list[str]:
    """Every reason the recipe cannot be built on a teacher of shape ``arch`` (empty: it can)."""
    problems: list[str] = []
    if recipe.version != RECIPE_VERSION:
        problems.append(f"recipe version {recipe.version} is unknown (this platform writes version {RECIPE_VERSION})")
    t = recipe.teacher
    if (t.layers, t.heads, t.kv_heads, t.hidden, t.intermediate) != (
        arch.layers, arch.heads, arch.kv_heads, arch.hidden, arch.intermediate
    ):  # fmt: skip
        problems.append(
            f"the recipe was written for a teacher of {t.layers} layers, {t.heads} heads in {t.kv_heads} KV groups, "
            f"width {t.hidden}, MLP {t.intermediate}; this teacher has {arch.layers}, {arch.heads} in "
            f"{arch.kv_heads}, {arch.hidden}, {arch.intermediate}"
        )
    kept = recipe.layers_kept
    if not kept:
        problems.append("the recipe keeps no layer: keep at least one")
    elif len(kept) > arch.layers:
        problems.append(f"the recipe keeps {len(kept)} layers; the teacher has {arch.layers}")
    elif (bad := _indices(kept, arch.layers)) is not None:
        problems.append(f"the kept layers {bad}")
    elif kept != sorted(kept):
        problems.append("the kept layers must be in the teacher's order")
    dropped = {d.get("index") for d in recipe.layers_dropped if isinstance(d, dict)}
    expected = set(range(arch.layers)) - set(kept)
    if dropped != expected and not problems:
        problems.append(f"layers_dropped must list each dropped layer ({sorted(expected)}) with its reason")
    if any(not (isinstance(d, dict) and str(d.get("reason") or "").strip()) for d in recipe.layers_dropped):
        problems.append("every dropped layer needs a reason")
    if len(recipe.kv_groups_kept) != len(kept):
        problems.append(f"kv_groups_kept has {len(recipe.kv_groups_kept)} entries for {len(kept)} kept layers")
    else:
        for position, groups in enumerate(recipe.kv_groups_kept):
            layer = kept[position] if position < len(kept) else position
            if not groups:
                problems.append(f"layer {layer} keeps no KV group: attention needs at least one")
            elif (bad := _indices(groups, arch.kv_heads)) is not None:
                problems.append(
                    f"layer {layer}'s KV groups {bad} (the teacher has {arch.heads} query heads in {arch.kv_heads} "
                    f"KV groups of {arch.group_size}; query heads follow their group)"
                )
        if len({len(g) for g in recipe.kv_groups_kept}) > 1:
            problems.append("every layer must keep the same number of KV groups (a standard llama config)")
        elif recipe.kv_groups_kept and recipe.kv_groups_kept[0]:
            heads = len(recipe.kv_groups_kept[0]) * arch.group_size
            if arch.hidden % heads:
                problems.append(
                    f"{len(recipe.kv_groups_kept[0])} KV groups give {heads} query heads, and a llama config needs the "
                    f"width {arch.hidden} to be a multiple of the head count: keep "
                    + " or ".join(str(g) for g in allowed_group_counts(arch))
                    + " groups"
                )
    if len(recipe.mlp_neurons_kept) != len(kept):
        problems.append(f"mlp_neurons_kept has {len(recipe.mlp_neurons_kept)} entries for {len(kept)} kept layers")
    else:
        for position, neurons in enumerate(recipe.mlp_neurons_kept):
            layer = kept[position] if position < len(kept) else position
            if not neurons:
                problems.append(f"layer {layer} keeps no MLP neuron")
            elif (bad := _indices(neurons, arch.intermediate)) is not None:
                problems.append(f"layer {layer}'s MLP neurons {bad}")
        if len({len(n) for n in recipe.mlp_neurons_kept}) > 1:
            problems.append(
                "every layer must keep the same MLP width: per-layer widths need llama.cpp's deci architecture, "
                "which this build does not write"
            )
    if not 0.0 <= recipe.wanda_sparsity < 0.9:
        problems.append("wanda_sparsity is a fraction from 0 to 0.9")
    c = recipe.calibration
    for name, value, low in (("token_budget", c.token_budget, 1), ("seq_len", c.seq_len, 8),
                             ("batch_size", c.batch_size, 1), ("top_k", c.top_k, 1),
                             ("checkpoint_every", c.checkpoint_every, 1)):  # fmt: skip
        if not isinstance(value, int) or value < low:
            problems.append(f"calibration {name} must be a whole number of at least {low} (got {value!r})")
    if isinstance(c.token_budget, int) and isinstance(c.seq_len, int) and isinstance(c.batch_size, int):
        if c.seq_len >= 8 and c.batch_size >= 1 and 0 < c.token_budget < c.seq_len * c.batch_size:
            problems.append(
                f"calibration token_budget {c.token_budget:,} is less than one batch ({c.batch_size} × {c.seq_len})"
            )
    if not (isinstance(c.learning_rate, int | float) and c.learning_rate > 0):
        problems.append("calibration learning_rate must be positive")
    if not (isinstance(c.warmup_fraction, int | float) and 0 <= c.warmup_fraction < 1):
        problems.append("calibration warmup_fraction is a fraction from 0 to below 1")
    if not (isinstance(c.final_lr_fraction, int | float) and 0 <= c.final_lr_fraction <= 1):
        problems.append("calibration final_lr_fraction is a fraction from 0 to 1")
    if not (isinstance(c.kd_temperature, int | float) and c.kd_temperature > 0):
        problems.append("calibration kd_temperature must be positive")
    mix = c.loss_mix if isinstance(c.loss_mix, dict) else {}
    if set(mix) - {"kl", "ce"} or any(not isinstance(v, int | float) or v < 0 for v in mix.values()):
        problems.append("calibration loss_mix takes kl and ce weights of 0 or more")
    elif not any(mix.values()):
        problems.append("calibration loss_mix needs a positive weight (kl or ce)")
    if not recipe.quant_types:
        problems.append("name at least one quantization type")
    unknown = [q for q in recipe.quant_types if q not in BITS_PER_WEIGHT]
    if unknown:
        problems.append(f"unknown quantization types {unknown}; known: {', '.join(BITS_PER_WEIGHT)}")
    return problems


def allowed_group_counts(arch: TeacherArch) -> list[int]:
    """KV-group counts a standard llama config can hold (``hidden`` divisible by the query-head count)."""
    return [g for g in range(1, arch.kv_heads + 1) if arch.hidden % (g * arch.group_size) == 0]


def params_of(recipe: Recipe) -> int:
    n = len(recipe.layers_kept)
    return parameter_count(recipe.teacher, [recipe.kv_groups] * n, [recipe.width] * n)


def estimate(recipe: Recipe, report: ImportanceReport | None = None) -> dict[str, Any]:
    """Parameters, fraction of the teacher's, GGUF bytes per requested type, and notes; with ``report``, the loss
    increase the importance analysis measured for what is dropped (before healing)."""
    params = params_of(recipe)
    notes = []
    k_quants = [q for q in recipe.quant_types if q in K_QUANTS]
    if k_quants and (recipe.teacher.hidden % 256 or recipe.width % 256):
        notes.append(
            f"{', '.join(k_quants)}: llama.cpp's k-quants need rows of a multiple of 256 values; with width "
            f"{recipe.teacher.hidden} and MLP width {recipe.width} some tensors fall back to another type (the build "
            "reports the types used)"
        )
    if recipe.wanda_sparsity:
        notes.append("unstructured zeros (Wanda sparsity) make the GGUF neither smaller nor faster")
    result: dict[str, Any] = {
        "params": params,
        "fraction": params / recipe.teacher.params,
        "gguf_bytes": {q: int(params * BITS_PER_WEIGHT[q] / 8) for q in ["F16", *recipe.quant_types]},
        "layers": len(recipe.layers_kept),
        "kv_groups": recipe.kv_groups,
        "mlp_width": recipe.width,
        "notes": notes,
    }
    if report is not None:
        kept = set(recipe.layers_kept)
        dropped_layers = sum(report.skip_loss[i] for i in range(recipe.teacher.layers) if i not in kept)
        dropped_groups = sum(
            report.kv_loss[layer][g]
            for layer, groups in zip(recipe.layers_kept, recipe.kv_groups_kept, strict=True)
            for g in range(recipe.teacher.kv_heads)
            if g not in groups
        )
        result["loss_increase_estimate"] = max(dropped_layers + dropped_groups, 0.0)
        notes.append(
            "estimated loss increase before healing (sum of the measured skip and mask losses of what is dropped; "
            "MLP neurons not counted): " + f"{result['loss_increase_estimate']:.3f} nats"
        )
    return result


def _top(scores: list[float], n: int) -> list[int]:
    """The indices of the ``n`` highest scores, in index order."""
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:n])


def _group_scores(report: ImportanceReport, layer: int) -> list[float]:
    losses = report.kv_loss[layer]
    return losses if any(v != 0 for v in losses) else report.kv_group_norm()[layer]


def build(
    report: ImportanceReport,
    *,
    name: str,
    layers_kept: list[int],
    reasons: dict[int, str],
    kv_groups: int,
    width: int,
    objective: str = "",
    calibration: Calibration | None = None,
) -> Recipe:
    """A recipe keeping ``layers_kept``, in each the ``kv_groups`` KV groups and ``width`` neurons that
    ``report`` scores highest."""
    arch = report.arch
    return Recipe(
        name=name,
        teacher=arch,
        layers_kept=sorted(layers_kept),
        layers_dropped=[{"index": i, "reason": reasons[i]} for i in range(arch.layers) if i not in layers_kept],
        kv_groups_kept=[_top(_group_scores(report, i), kv_groups) for i in sorted(layers_kept)],
        mlp_neurons_kept=[_top(report.neuron_score[i], width) for i in sorted(layers_kept)],
        objective=objective,
        calibration=calibration or Calibration(),
    )


def _skip_reason(report: ImportanceReport, layer: int) -> str:
    order = sorted(range(report.arch.layers), key=lambda i: report.skip_loss[i])
    return (
        f"skipping it raised the loss by {report.skip_loss[layer]:+.4f} nats on the sample (rank "
        f"{order.index(layer) + 1} of {report.arch.layers} from the least important); block influence "
        f"{report.block_influence[layer]:.4f}"
    )


def _width_for(arch: TeacherArch, target: int, n_layers: int, kv_groups: int) -> int:
    fixed = parameter_count(arch, [kv_groups] * n_layers, [0] * n_layers)
    width = (target - fixed) / (3 * arch.hidden * max(n_layers, 1))
    return int(min(arch.intermediate, max(WIDTH_STEP, round(width / WIDTH_STEP) * WIDTH_STEP)))


def at_fraction(report: ImportanceReport, fraction: float, *, name: str | None = None) -> Recipe:
    """A recipe at about ``fraction`` of the teacher's parameters, chosen from the scores.

    Width is pruned before depth (on this platform's measurements, width pruning guided by domain activations kept
    far more quality than dropping layers at the same size): every KV group kept from 70 % up, the least important
    group of each layer dropped below (when there are three or more), then the MLP width that meets the target; only
    when that width would fall under a quarter of the teacher's are the layers whose skipping costs least dropped
    (never the first or the last), one at a time, until it does not.
    """
    arch = report.arch
    if not 0.05 < fraction <= 1.0:
        raise ValueError(f"a target fraction is between 0.05 and 1 (got {fraction})")
    target = int(arch.params * fraction)
    kv = arch.kv_heads
    if fraction < 0.7 and arch.kv_heads >= 3:
        kv = max((g for g in allowed_group_counts(arch) if g < arch.kv_heads), default=arch.kv_heads)
    droppable = sorted(range(1, arch.layers - 1), key=lambda i: (report.skip_loss[i], i))
    kept = list(range(arch.layers))
    width = _width_for(arch, target, len(kept), kv)
    while width < arch.intermediate // 4 and droppable and len(kept) > 2:
        kept.remove(droppable.pop(0))
        width = _width_for(arch, target, len(kept), kv)
    reasons = {i: _skip_reason(report, i) for i in range(arch.layers)}
    percent = round(100 * fraction)
    objective = (
        f"about {percent} % of the teacher's parameters: {len(kept)} of {arch.layers} layers, {kv} of "
        f"{arch.kv_heads} KV groups per layer (by masked loss), MLP width {width} of {arch.intermediate} "
        "(by Wanda score on the domain)"
    )
    return build(report, name=name or f"{percent} % student", layers_kept=kept, reasons=reasons, kv_groups=kv,
                 width=width, objective=objective)  # fmt: skip


def propose(report: ImportanceReport, arch: TeacherArch | None = None,
            targets: tuple[float, ...] = (0.75, 0.55, 0.40)) -> list[Recipe]:  # fmt: skip
    """The platform's proposals, one per parameter target."""
    return [at_fraction(report, t) for t in targets]


def by_importance_ratio(report: ImportanceReport, arch: TeacherArch | None, ratio: float) -> Recipe:
    """Design document 004: keep the most important parts up to ``ratio`` of the parameters (real scores)."""
    return at_fraction(report, ratio, name=f"Importance ratio {ratio:.2f}")


def by_layer_count(report: ImportanceReport, arch: TeacherArch | None, n_layers: int) -> Recipe:
    """Design document 004: keep the ``n_layers`` layers whose skipping costs most, at full width."""
    a = report.arch
    if not 1 <= n_layers <= a.layers:
        raise ValueError(f"keep from 1 to {a.layers} layers (got {n_layers})")
    kept = _top(report.skip_loss, n_layers)
    reasons = {i: _skip_reason(report, i) + f"; not among the {n_layers} most important" for i in range(a.layers)}
    return build(report, name=f"{n_layers} most important layers", layers_kept=kept, reasons=reasons,
                 kv_groups=a.kv_heads, width=a.intermediate,
                 objective=f"the {n_layers} layers whose skipping raised the loss most")  # fmt: skip


def by_weight_range(
    stats: list[dict[str, float]], report: ImportanceReport, low: float, high: float, statistic: str = "mean_abs"
) -> Recipe:
    """Design document 004: keep the layers whose weight ``statistic`` (``mean_abs`` or ``std``) lies in
    [low, high], at full width."""
    a = report.arch
    if len(stats) != a.layers:
        raise ValueError(f"weight statistics for {len(stats)} layers; the teacher has {a.layers}")
    values = [row[statistic] for row in stats]
    kept = [i for i, v in enumerate(values) if low <= v <= high]
    if not kept:
        raise ValueError(
            f"no layer has a {statistic} in [{low}, {high}]; the layers range from {min(values):.5f} to "
            f"{max(values):.5f}"
        )
    reasons = {i: f"{statistic} of its weights {values[i]:.5f} is outside [{low}, {high}]" for i in range(a.layers)}
    return build(report, name=f"Weights in [{low}, {high}]", layers_kept=kept, reasons=reasons,
                 kv_groups=a.kv_heads, width=a.intermediate,
                 objective=f"layers whose {statistic} lies in [{low}, {high}]")  # fmt: skip


def same_shapes(recipe: Recipe, report: ImportanceReport, *, name: str, reason: str) -> Recipe:
    """The same layers, KV-group count and width as ``recipe``, the groups and neurons chosen by ``report``
    (a baseline: weight magnitude, or Wanda scores from generic text)."""
    reasons = {d["index"]: d["reason"] for d in recipe.layers_dropped}
    return build(report, name=name, layers_kept=recipe.layers_kept, reasons=reasons, kv_groups=recipe.kv_groups,
                 width=recipe.width, objective=reason, calibration=recipe.calibration)  # fmt: skip


def layer_drop_last(report: ImportanceReport, n_layers: int) -> Recipe:
    """Baseline: drop the last ``n_layers`` layers, full width."""
    a = report.arch
    if not 1 <= n_layers < a.layers:
        raise ValueError(f"drop from 1 to {a.layers - 1} layers (got {n_layers})")
    kept = list(range(a.layers - n_layers))
    reasons = {i: f"one of the last {n_layers} layers" for i in range(a.layers)}
    return build(report, name=f"Last {n_layers} layers dropped", layers_kept=kept, reasons=reasons,
                 kv_groups=a.kv_heads, width=a.intermediate, objective="baseline: the last layers dropped")  # fmt: skip


def layer_drop_lowest_influence(report: ImportanceReport, n_layers: int) -> Recipe:
    """Baseline (ShortGPT): drop the ``n_layers`` layers of lowest block influence, full width."""
    a = report.arch
    if not 1 <= n_layers < a.layers:
        raise ValueError(f"drop from 1 to {a.layers - 1} layers (got {n_layers})")
    dropped = set(sorted(range(a.layers), key=lambda i: (report.block_influence[i], i))[:n_layers])
    kept = [i for i in range(a.layers) if i not in dropped]
    reasons = {i: f"block influence {report.block_influence[i]:.4f}, among the {n_layers} lowest" for i in dropped}
    return build(report, name=f"{n_layers} lowest-influence layers dropped", layers_kept=kept, reasons=reasons,
                 kv_groups=a.kv_heads, width=a.intermediate,
                 objective="baseline: the layers of lowest block influence dropped (ShortGPT)")  # fmt: skip


def layers_for_fraction(arch: TeacherArch, fraction: float) -> int:
    """How many layers to drop (full width) to come nearest ``fraction`` of the parameters (for depth baselines)."""
    target = arch.params * fraction
    best = min(range(1, arch.layers), key=lambda d: abs(
        parameter_count(arch, [arch.kv_heads] * (arch.layers - d), [arch.intermediate] * (arch.layers - d)) - target
    ))  # fmt: skip
    return best
