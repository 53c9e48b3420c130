"""Building an approved recipe into a student (a job on the gpu queue), and deploying the student."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from distillation.models import Build, BuildStatus, Recipe, RecipeStatus
from projects.actions import ActionError, do_enqueue_job
from projects.models import Job

BUILD_JOB = "distillation.build"
BUILDABLE = (RecipeStatus.APPROVED, RecipeStatus.FAILED, RecipeStatus.BUILT, RecipeStatus.DEPLOYED)


def do_build(recipe: Recipe, user: User) -> Build:
    """Start a build of an approved recipe: prune, heal by distillation, GGUF, quantize, evaluate."""
    if recipe.status not in BUILDABLE:
        raise ActionError(f"“{recipe.name}” is {recipe.get_status_display().lower()}: approve it before building.",
                          code="conflict")  # fmt: skip
    if recipe.builds.exclude(status__in=[BuildStatus.BUILT, BuildStatus.FAILED]).exists():
        raise ActionError(f"“{recipe.name}” is being built already.", code="conflict")
    with transaction.atomic():
        build = Build.objects.create(organization=recipe.organization, recipe=recipe, document=recipe.document,
                                     created_by=user)  # fmt: skip
        job = do_enqueue_job(recipe.organization, BUILD_JOB, project=recipe.project, user=user,
                             params={"build": build.pk})  # fmt: skip
        Build.objects.filter(pk=build.pk).update(job=job)
        Recipe.objects.filter(pk=recipe.pk).update(status=RecipeStatus.BUILDING)
        build.job = job
    return build


def sync_deployed(org: object) -> None:
    """Recipes whose student (or one of its quantized copies) runs in a live agent are ``deployed``; ones whose
    agents all stopped are ``built`` again. Called on the pages and API that show recipes (agents go live in the
    runtime app, which does not know about recipes)."""
    from runtime.models import Agent, AgentStatus

    live = set(Agent.objects.for_org(org).filter(status=AgentStatus.LIVE).values_list("model_id", flat=True))
    deployed, built = [], []
    for build in (
        Build.objects.for_org(org).filter(status=BuildStatus.BUILT).only("recipe_id", "student_id", "quantized")
    ):
        models = {build.student_id, *(q.get("model") for q in build.quantized or [])}
        (deployed if models & live else built).append(build.recipe_id)
    Recipe.objects.filter(pk__in=deployed, status=RecipeStatus.BUILT).update(status=RecipeStatus.DEPLOYED)
    Recipe.objects.filter(pk__in=set(built) - set(deployed), status=RecipeStatus.DEPLOYED).update(
        status=RecipeStatus.BUILT
    )


BASELINES_JOB = "distillation.baselines"


def do_evaluate_baselines(build: Build, user: User) -> Job:
    """Build the honest baselines of a built student — the same parameter count and healing budget: weight
    magnitude, Wanda scores from the control text, the last layers dropped, the lowest-influence layers dropped —
    and add their perplexities to the build's report (a job)."""
    if build.status != BuildStatus.BUILT:
        raise ActionError("Evaluate baselines once the build is done.", code="conflict")
    if build.recipe.analysis_id is None:
        raise ActionError("This student has no importance analysis to take the baselines' shapes from.")
    return do_enqueue_job(build.organization, BASELINES_JOB, project=build.recipe.project, user=user,
                          params={"build": build.pk})  # fmt: skip
