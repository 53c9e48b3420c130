"""Read-side summaries: A/B test results and the audit's counts and latency percentiles."""

from __future__ import annotations

import math

from django.db.models import Count, Q, QuerySet, Sum

from runtime.models import Endpoint, Feedback, InferenceRecord, Variant


def percentile(values: list[int], q: float) -> int | None:
    """Nearest-rank percentile of ``values`` (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return int(ordered[int(rank) - 1])


def latency_summary(records: QuerySet) -> dict:
    rows = list(records.values_list("ttft_ms", "latency_ms"))
    ttft = [t for t, _ in rows if t is not None]
    total = [t for _, t in rows]
    return {
        "ttft_ms": {"p50": percentile(ttft, 50), "p95": percentile(ttft, 95), "p99": percentile(ttft, 99)},
        "latency_ms": {"p50": percentile(total, 50), "p95": percentile(total, 95), "p99": percentile(total, 99)},
    }


def audit_summary(records: QuerySet) -> dict:
    """Counts by outcome and source, tokens and latency percentiles of a filtered audit."""
    totals = records.aggregate(n=Count("id"), tokens_in=Sum("prompt_tokens"), tokens_out=Sum("completion_tokens"))
    by_outcome = dict(records.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    by_source = dict(records.values_list("source").annotate(n=Count("id")).values_list("source", "n"))
    return {
        "count": totals["n"],
        "tokens_in": totals["tokens_in"] or 0,
        "tokens_out": totals["tokens_out"] or 0,
        "by_outcome": by_outcome,
        "by_source": by_source,
        **latency_summary(records),
    }


def ab_results(endpoint: Endpoint) -> dict:
    """Per variant: conversations, answers, thumbs up/down with the up-rate's 95 % interval, latency."""
    results = {}
    for variant in (Variant.BASELINE, Variant.CANDIDATE):
        records = InferenceRecord.objects.for_org(endpoint.organization).filter(endpoint=endpoint, variant=variant)
        feedback = Feedback.objects.for_org(endpoint.organization).filter(
            message__conversation__endpoint=endpoint, message__conversation__variant=variant
        )
        votes = feedback.aggregate(up=Count("id", filter=Q(rating=1)), down=Count("id", filter=Q(rating=-1)))
        n = votes["up"] + votes["down"]
        interval = wilson_interval(votes["up"], n)
        results[variant] = {
            "conversations": endpoint.conversations.filter(variant=variant).count(),
            "answers": records.count(),
            "failed": records.filter(outcome="failed").count(),
            "thumbs_up": votes["up"],
            "thumbs_down": votes["down"],
            "up_rate": round(votes["up"] / n, 4) if n else None,
            "up_rate_ci95": [round(interval[0], 4), round(interval[1], 4)] if interval else None,
            **latency_summary(records),
        }
    return results


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95 % Wilson score interval of a proportion (good for small counts)."""
    if n == 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)
