"""Recipes: proposed from an importance analysis, made by a strategy, written or edited by a person, approved.

Every document is validated by the engine (``distillation.engine.recipes``) before it is kept, so a recipe row
always holds a document a build can run; an edit of a proposed recipe is a new version; an approved recipe is
frozen (building it copies the document into the build).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from distillation.models import ImportanceAnalysis, Recipe, RecipeStatus, Strategy
from projects.actions import ActionError
from projects.models import LanguageModel

#: Parameter fractions of the three proposals (design document 002: small, medium, large students).
PROPOSAL_TARGETS = (0.75, 0.55, 0.40)


def _engine() -> Any:
    """The engine's recipes module (imported on use: pages never load torch)."""
    from distillation.engine import recipes

    return recipes


def checked(document: dict, arch: dict, report: Any = None) -> tuple[dict, dict]:
    """``(document, estimates)`` when the engine accepts ``document`` for a teacher of shape ``arch``; else
    ActionError listing every problem. With the analysis's ``report``, the estimates include the measured loss
    of what is dropped."""
    from distillation.engine.families import TeacherArch

    engine = _engine()
    try:
        recipe = engine.Recipe.from_json(document)
        teacher = TeacherArch.from_json(arch)
    except (KeyError, TypeError, ValueError) as exc:
        raise ActionError(f"The recipe is not in the recipe format: {exc}", field="document") from exc
    problems = engine.validate(recipe, teacher)
    if problems:
        raise ActionError("The recipe cannot be built: " + "; ".join(problems) + ".", field="document")
    return recipe.to_json(), engine.estimate(recipe, report)


def _create(analysis: ImportanceAnalysis | None, teacher: LanguageModel, user: User | None, *, name: str,
            strategy: str, document: dict, arch: dict, report: Any = None) -> Recipe:  # fmt: skip
    document, estimates = checked(document, arch, report)
    return Recipe.objects.create(
        organization=teacher.organization,
        project=teacher.project,
        teacher=teacher,
        analysis=analysis,
        name=name[:200],
        strategy=strategy,
        document=document,
        estimates=estimates,
        created_by=user,
    )


def report_of(analysis: ImportanceAnalysis) -> Any:
    """The engine's importance report of a complete analysis (read from its blob)."""
    from projects import blobs

    if analysis.report_blob is None:
        raise ActionError("The importance analysis has no scores yet.", code="conflict")
    from distillation.engine.importance import ImportanceReport

    with open(blobs.local_path(analysis.report_blob), encoding="utf-8") as handle:
        return ImportanceReport.from_json(json.load(handle))


def _fitted(recipe: Any, analysis: ImportanceAnalysis) -> Any:
    """``recipe`` healing on windows like the analysis's, within what the dataset's train split holds."""
    calibration = recipe.calibration
    calibration.seq_len = analysis.seq_len
    batch_tokens = calibration.seq_len * calibration.batch_size
    dataset = analysis.dataset
    available = int(0.9 * (dataset.token_count or analysis.n_tokens) * dataset.split_ratio)
    calibration.token_budget = max(
        batch_tokens, min(calibration.token_budget, available) // batch_tokens * batch_tokens
    )
    return recipe


def do_propose_recipes(analysis: ImportanceAnalysis, user: User | None) -> list[Recipe]:
    """The platform's proposals at about 75 %, 55 % and 40 % of the teacher's parameters, healing on windows like
    the analysis's and within what the dataset's train split holds."""
    report = report_of(analysis)
    proposals = [_fitted(p, analysis) for p in _engine().propose(report, targets=PROPOSAL_TARGETS)]
    with transaction.atomic():
        return [
            _create(
                analysis,
                analysis.teacher,
                user,
                name=p.name,
                strategy=Strategy.PROPOSAL,
                document=p.to_json(),
                arch=analysis.arch,
                report=report,
            )  # fmt: skip
            for p in proposals
        ]


def do_recipe_by_strategy(analysis: ImportanceAnalysis, user: User, strategy: str, **options: Any) -> Recipe:
    """A recipe by one of design document 004's extraction strategies, or a baseline, from ``analysis``."""
    engine = _engine()
    report = report_of(analysis)
    try:
        if strategy == Strategy.IMPORTANCE_RATIO:
            recipe = engine.by_importance_ratio(report, None, float(options["ratio"]))
        elif strategy == Strategy.LAYER_COUNT:
            recipe = engine.by_layer_count(report, None, int(options["n_layers"]))
        elif strategy == Strategy.WEIGHT_RANGE:
            stats = (analysis.summary or {}).get("weight_stats") or []
            recipe = engine.by_weight_range(stats, report, float(options["low"]), float(options["high"]))
        elif strategy == Strategy.BASELINE_LAST_LAYERS:
            recipe = engine.layer_drop_last(report, int(options["n_layers"]))
        elif strategy == Strategy.BASELINE_LOW_INFLUENCE:
            recipe = engine.layer_drop_lowest_influence(report, int(options["n_layers"]))
        else:
            raise ActionError(f"Unknown strategy “{strategy}”.", field="strategy")
    except KeyError as exc:
        raise ActionError(f"This strategy needs a value for {exc.args[0]}.", field="strategy") from exc
    except (TypeError, ValueError) as exc:
        raise ActionError(f"The strategy's settings do not work: {exc}.", field="strategy") from exc
    recipe = _fitted(recipe, analysis)
    return _create(analysis, analysis.teacher, user, name=recipe.name, strategy=strategy, document=recipe.to_json(),
                   arch=analysis.arch, report=report)  # fmt: skip


def do_edit_recipe(recipe: Recipe, user: User, text: str) -> Recipe:
    """Replace a proposed recipe's document with ``text`` (JSON), validated; a new version."""
    if not recipe.is_editable:
        raise ActionError(f"“{recipe.name}” is {recipe.get_status_display().lower()}: only a proposed recipe is "
                          "edited. Duplicate it to change it.", code="conflict")  # fmt: skip
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ActionError(f"The recipe is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
                          field="document") from exc  # fmt: skip
    if not isinstance(document, dict):
        raise ActionError("The recipe is a JSON object.", field="document")
    arch = recipe.analysis.arch if recipe.analysis else document.get("teacher", {})
    document, estimates = checked(document, arch)
    Recipe.objects.filter(pk=recipe.pk).update(
        document=document,
        estimates=estimates,
        version=recipe.version + 1,
        name=document.get("name") or recipe.name,
        strategy=Strategy.MANUAL if recipe.strategy == Strategy.PROPOSAL else recipe.strategy,
        updated_at=timezone.now(),
    )
    recipe.refresh_from_db()
    return recipe


def do_approve_recipe(recipe: Recipe, user: User) -> Recipe:
    """Approve a proposed recipe (validated once more): it can then be built."""
    if recipe.status != RecipeStatus.PROPOSED:
        raise ActionError(f"“{recipe.name}” is already {recipe.get_status_display().lower()}.", code="conflict")
    arch = recipe.analysis.arch if recipe.analysis else recipe.document.get("teacher", {})
    checked(recipe.document, arch)
    updated = Recipe.objects.filter(pk=recipe.pk, status=RecipeStatus.PROPOSED).update(
        status=RecipeStatus.APPROVED, approved_by=user, approved_at=timezone.now(), updated_at=timezone.now()
    )
    if not updated:
        raise ActionError("Someone changed the recipe meanwhile; reload the page.", code="conflict")
    recipe.refresh_from_db()
    return recipe
