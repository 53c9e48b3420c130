"""Building an approved recipe into a student (a job on the gpu queue), and deploying the student."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from distillation.models import Build, BuildStatus, Recipe, RecipeStatus
from projects.actions import ActionError, do_enqueue_job

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
