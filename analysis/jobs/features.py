"""Feature jobs: describe every feature of a coder; run the test box on a text.

Describing streams the capture once for the statistics (frequency, mean, max, histogram, top activations), reads
only the windows around the top activations for the contexts, projects each decoder direction through the
teacher's unembedding (logit lens) and correlates each feature with the layer's MLP neurons. The automatic label
(method ``contexts+logit-lens``) names the tokens the feature fires on most and the tokens it promotes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from analysis.actions.features import DESCRIBE_JOB, TEST_BOX_JOB
from analysis.jobs.coders import capture_folder
from analysis.models import Coder, Feature, FeatureNeuronLink
from projects import blobs
from projects.actions import ActionError
from projects.background import JobContext, JobKind, Refused, register
from projects.models import Job

#: Top contexts kept per feature, and features described per read of the capture.
N_CONTEXTS = 8
CHUNK = 256


def job_coder(job: Job) -> Coder:
    coder = (
        Coder.objects.for_org(job.organization)
        .select_related("run__capture__torch_model")
        .filter(pk=job.params.get("coder"))
        .first()
    )
    if coder is None:
        raise Refused("The coder was deleted before its job ran.")
    return coder


def load_coder(coder: Coder) -> Any:
    from analysis.engine.transcoders import SparseCoder

    folder = Path(settings.DATA_DIR) / "analysis" / "coder-folders" / str(coder.pk)
    blobs.materialize_folder([("config.json", coder.config_blob), ("model.safetensors", coder.weights_blob)], folder)
    return SparseCoder.load(folder)


def load_coder_teacher(coder: Coder) -> tuple[Any, Any]:
    from projects.torch_loading import load_teacher

    try:
        model, tokenizer, _ = load_teacher(coder.run.capture.torch_model)
    except ActionError as exc:
        raise Refused(exc.message) from exc
    return model, tokenizer


def printable(text: str) -> str:
    """Token text as stored and shown: a NUL byte (a byte-fallback token decodes to one) becomes the visible
    U+2400 symbol, which PostgreSQL's text and jsonb columns accept."""
    return text.replace("\x00", "\u2400")


def token_texts(tokenizer: Any, ids: list[int]) -> list[str]:
    return [printable(tokenizer.decode([i])) for i in ids]


def _lens_tokens(tokenizer: Any, ids: Any, logits: Any) -> list[list]:
    return [[printable(tokenizer.decode([int(i)])), round(float(v), 4)] for i, v in zip(ids, logits, strict=True)]


def auto_label(contexts: list[dict], promoted: list[list]) -> str:
    """A first label from what the feature fires on and what it promotes."""
    firing = Counter(ctx["tokens"][ctx["center"]].strip() for ctx in contexts if ctx["tokens"])
    on = ", ".join(f"“{t}”" for t, _ in firing.most_common(3) if t)
    out = ", ".join(f"“{t.strip()}”" for t, _ in promoted[:3] if t.strip())
    parts = [f"fires on {on}" if on else "", f"promotes {out}" if out else ""]
    return "; ".join(p for p in parts if p)[:300]


@register
class DescribeFeatures(JobKind):
    """Statistics, contexts, histograms, logit lens, labels and neuron links for every feature of a coder."""

    name = DESCRIBE_JOB
    title = "Describe features"
    queue = "gpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("coder"), int):
            raise ValueError('This job needs the id of a coder: {"coder": <id>}.')
        return {"coder": params["coder"]}

    def run(self, job: Job, ctx: JobContext) -> dict:
        from analysis.engine.features import feature_neuron_links, feature_stats, top_contexts
        from analysis.engine.hookpoints import mlp_modules
        from analysis.engine.logit_lens import logit_lens
        from analysis.engine.shards import CaptureReader

        coder_row = job_coder(job)
        coder = load_coder(coder_row)
        reader = CaptureReader(capture_folder(coder_row.run.capture))
        layer = coder_row.layer
        ctx.progress(0.0, f"Statistics of {coder.d_sae:,} features over {reader.n_tokens:,} tokens", force=True)
        stats = feature_stats(
            coder, reader, layer, n_top=N_CONTEXTS,
            progress=lambda done, total, **_: ctx.progress(0.4 * done / max(total, 1)),
        )  # fmt: skip
        model, tokenizer = load_coder_teacher(coder_row)
        ctx.progress(0.4, "Logit lens", force=True)
        lens = logit_lens(coder, model, top_n=8)
        ctx.progress(0.45, "Neuron links", force=True)
        links = feature_neuron_links(coder, mlp_modules(model, [layer])[layer], reader, layer, top_n=8)
        edges = stats.hist_edges.tolist()
        features: list[Feature] = []
        for start in range(0, coder.d_sae, CHUNK):
            chunk = list(range(start, min(coder.d_sae, start + CHUNK)))
            alive = [f for f in chunk if int(stats.count[f]) > 0]
            contexts = top_contexts(coder, reader, layer, stats, alive) if alive else {}
            for f in chunk:
                described = [
                    {"value": round(c.value, 4), "doc_id": c.doc_id, "center": c.center,
                     "tokens": token_texts(tokenizer, c.token_ids), "activations": [round(a, 4) for a in c.activations]}
                    for c in contexts.get(f, [])
                ]  # fmt: skip
                promoted = _lens_tokens(tokenizer, lens.promoted_ids[f], lens.promoted_logits[f])
                suppressed = _lens_tokens(tokenizer, lens.suppressed_ids[f], lens.suppressed_logits[f])
                features.append(
                    Feature(
                        coder=coder_row,
                        index=f,
                        frequency=float(stats.frequency[f]),
                        mean_activation=float(stats.mean[f]),
                        max_activation=float(stats.max[f]),
                        histogram={"edges": edges, "counts": stats.hist_counts[f].tolist()},
                        contexts=described,
                        logit_lens={"promoted": promoted, "suppressed": suppressed},
                        label=auto_label(described, promoted) if described else "",
                        label_method="contexts+logit-lens" if described else "",
                    )
                )
            ctx.progress(0.5 + 0.45 * len(features) / coder.d_sae, f"{len(features):,} of {coder.d_sae:,} features")
        with transaction.atomic():
            Feature.objects.filter(coder=coder_row).delete()
            created = Feature.objects.bulk_create(features, batch_size=500)
            FeatureNeuronLink.objects.bulk_create(
                [
                    FeatureNeuronLink(feature=row, layer=layer, neuron=int(n), weight=float(w))
                    for row in created
                    if row.frequency > 0
                    for n, w in zip(links.neurons[row.index], links.weights[row.index], strict=True)
                ],
                batch_size=1000,
            )
        alive = sum(1 for f in features if f.frequency > 0)
        ctx.progress(1.0, f"{len(features):,} features described ({alive:,} fired on the capture)", force=True)
        return {"coder": coder_row.pk, "features": len(features), "alive": alive}


@register
class TestBox(JobKind):
    """Which features of a coder fire on each token of a text (the teacher and the coder run here, not in the web)."""

    name = TEST_BOX_JOB
    title = "Test a text"
    queue = "gpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("coder"), int) or not isinstance(params.get("text"), str):
            raise ValueError('This job needs a coder and a text: {"coder": <id>, "text": "..."}.')
        return {"coder": params["coder"], "text": params["text"]}

    def run(self, job: Job, ctx: JobContext) -> dict:
        from analysis.engine.features import features_on_tokens

        coder_row = job_coder(job)
        coder = load_coder(coder_row)
        model, tokenizer = load_coder_teacher(coder_row)
        ctx.progress(0.5, "Running the teacher and the coder", force=True)
        ids = tokenizer.encode(job.params["text"], add_special_tokens=False).ids
        if not ids:
            raise Refused("The text has no tokens.")
        found = features_on_tokens(model, {coder_row.layer: coder}, ids)[coder_row.layer]
        labels = dict(Feature.objects.filter(coder=coder_row).values_list("index", "label"))
        tokens = []
        for position, token in enumerate(token_texts(tokenizer, ids)):
            active = [
                {"feature": int(f), "activation": round(float(a), 4), "label": labels.get(int(f), "")}
                for a, f in zip(found.top_acts[position], found.top_indices[position], strict=True)
                if float(a) > 0
            ]
            tokens.append({"token": token, "features": active[:5]})
        return {"coder": coder_row.pk, "layer": coder_row.layer, "tokens": tokens}
