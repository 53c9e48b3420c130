"""The labelling job: an agent describes each feature from its top contexts and logit lens, then the label is scored.

Per feature, the contexts (strongest first) are split: every other one is shown to the agent to explain, the rest
are held out. The score is detection by the agent: for each held-out context of the feature and as many top
contexts of other features, the agent is told the label and asked whether the text contains it (yes/no). The
score is the correlation between those answers and the feature's true activation on each text (its largest value
over the text's tokens, computed here with the teacher and the coder): 1 when the label tells exactly where the
feature fires, 0 when it tells nothing (:func:`analysis.engine.features.explanation_score`).
"""

from __future__ import annotations

import random
import re
import threading
from typing import Any

from analysis.actions.labels import LABEL_JOB
from analysis.jobs.features import job_coder, load_coder, load_coder_teacher, printable
from analysis.models import Feature
from projects.background import JobContext, JobKind, Refused, register
from projects.models import Job
from runtime.models import Agent

#: Contexts shown to the agent per feature, and words in a label.
SHOWN = 4
LABEL_TOKENS = 24
JUDGE_TOKENS = 3


def snippet(context: dict, mark: bool = True) -> str:
    """A context as text; with ``mark``, the token where the feature fired most is in [[double brackets]]."""
    pieces = []
    for i, token in enumerate(context["tokens"]):
        pieces.append(f"[[{token}]]" if mark and i == context["center"] else token)
    return "".join(pieces).replace("\n", " ").strip()


def explain_prompt(shown: list[dict], promoted: list[str]) -> str:
    lines = "\n".join(f"{i + 1}. {snippet(c)}" for i, c in enumerate(shown))
    after = f"\nAfter it fires, these words become more likely: {', '.join(promoted)}." if promoted else ""
    return (
        "A feature of a language model fires on the words in [[double brackets]] in these snippets:\n"
        f"{lines}{after}\nIn a few words, what does the feature detect? Reply with the description only."
    )


def judge_prompt(label: str, context: dict) -> str:
    return (
        f"A feature of a language model detects: {label}\nText: {snippet(context, mark=False)}\n"
        "Does the text contain what the feature detects? Answer yes or no."
    )


def clean_label(text: str) -> str:
    text = printable(text)
    first = next((line for line in text.strip().splitlines() if line.strip()), "")
    return re.sub(r"^(the feature (detects|fires on)\s*:?\s*)", "", first.strip().strip("\"'“”"), flags=re.I)[:300]


def says_yes(text: str) -> float:
    return 1.0 if text.strip().lower().lstrip("\"'*").startswith("yes") else 0.0


def _ask(backend: Any, prompt: str, max_tokens: int) -> str:
    from runtime.engine.chat import ChatRequest, Delta, GenerationSettings

    request = ChatRequest(
        messages=[{"role": "user", "content": prompt}],
        settings=GenerationSettings(temperature=0.0, max_tokens=max_tokens, seed=0),
    )
    return "".join(e.text for e in backend.stream(request, threading.Event()) if isinstance(e, Delta))


@register
class LabelFeatures(JobKind):
    """Labels from an agent for a coder's most frequent features, each with its detection score."""

    name = LABEL_JOB
    title = "Label features with an agent"
    queue = "gpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not all(isinstance(params.get(key), int) for key in ("coder", "agent", "limit")):
            raise ValueError('This job needs {"coder": <id>, "agent": <id>, "limit": <n>}.')
        return {key: params[key] for key in ("coder", "agent", "limit")}

    def run(self, job: Job, ctx: JobContext) -> dict:
        from analysis.engine.features import explanation_score, features_on_tokens
        from runtime import serving
        from runtime.engine.chat import InferenceError

        coder_row = job_coder(job)
        agent = Agent.objects.for_org(job.organization).select_related("model").filter(pk=job.params["agent"]).first()
        if agent is None:
            raise Refused("The agent was deleted before the job ran.")
        backend = serving.backend_for(agent)
        described = list(
            Feature.objects.filter(coder=coder_row, frequency__gt=0).exclude(contexts=[]).order_by("-frequency")
        )
        chosen = described[: job.params["limit"]]
        if not chosen:
            raise Refused("No described feature has contexts to show the agent.")
        coder = load_coder(coder_row)
        model, tokenizer = load_coder_teacher(coder_row)
        layer = coder_row.layer
        rng = random.Random(coder_row.pk)

        def activation_on(context: dict, feature: int) -> float:
            ids = tokenizer.encode(snippet(context, mark=False), add_special_tokens=False).ids
            if not ids:
                return 0.0
            found = features_on_tokens(model, {layer: coder}, ids)[layer]
            hit = (found.top_indices == feature) * found.top_acts
            return float(hit.max()) if hit.numel() else 0.0

        scores = []
        for n, feature in enumerate(chosen):
            ctx.check_cancelled()
            ctx.progress(n / len(chosen), f"Feature {feature.index}: asking {agent.name}")
            shown, held_out = feature.contexts[0::2][:SHOWN], feature.contexts[1::2]
            promoted = [t.strip() for t, _ in (feature.logit_lens or {}).get("promoted", [])[:5] if t.strip()]
            try:
                label = clean_label(_ask(backend, explain_prompt(shown, promoted), LABEL_TOKENS))
                others = [f for f in described if f.pk != feature.pk]
                negatives = [rng.choice(rng.choice(others).contexts) for _ in held_out] if others else []
                tests = held_out + negatives
                predicted = (
                    [says_yes(_ask(backend, judge_prompt(label, c), JUDGE_TOKENS)) for c in tests] if label else []
                )
            except InferenceError as exc:
                raise Refused(f"{agent.name} could not answer: {exc}") from exc
            if not label:
                continue
            actual = [activation_on(c, feature.index) for c in tests]
            score = explanation_score(predicted, actual) if len(tests) >= 2 else None
            Feature.objects.filter(pk=feature.pk).update(
                label=label, label_method=f"agent:{agent.slug}", label_score=score
            )
            if score is not None:
                scores.append(score)
        mean = sum(scores) / len(scores) if scores else None
        summary = f"{len(chosen)} features labelled by {agent.name}" + (
            f"; mean detection score {mean:.2f}" if mean is not None else ""
        )
        ctx.progress(1.0, summary, force=True)
        return {"coder": coder_row.pk, "labelled": len(chosen), "mean_score": mean}
