"""Project jobs: recounting a project's statistics."""

from __future__ import annotations

from django.db.models import Count
from django.utils import timezone

from projects.background import JobContext, JobKind, register
from projects.models import Job, JobStatus, Membership, Project


@register
class RecountProjectStats(JobKind):
    """Recompute a project's figures (its other jobs by status and kind, members) and store them.

    Small, but it exercises the whole path: enqueue on commit, worker, progress, result.
    """

    name = "projects.recount_stats"
    title = "Recount project statistics"
    queue = "default"
    user_startable = True

    def run(self, job: Job, ctx: JobContext) -> dict:
        project = Project.objects.for_org(job.organization).get(pk=job.project_id)
        others = Job.objects.for_org(job.organization).filter(project=project).exclude(pk=job.pk)
        steps = [
            (
                "jobs by status",
                lambda: (
                    {status: 0 for status in JobStatus.values}
                    | dict(others.values_list("status").annotate(n=Count("id")).order_by())
                ),
            ),
            ("jobs by kind", lambda: dict(others.values_list("kind").annotate(n=Count("id")).order_by())),
            ("members", lambda: Membership.objects.for_org(job.organization).count()),
        ]
        stats: dict = {}
        for index, (label, compute) in enumerate(steps):
            ctx.progress(index / len(steps), f"Counting {label}", force=True)
            stats[label.replace(" ", "_")] = compute()
            ctx.log(f"counted {label}")
        project.stats = stats
        project.stats_updated_at = timezone.now()
        project.save(update_fields=["stats", "stats_updated_at"])
        ctx.progress(1.0, "Statistics updated", force=True)
        ctx.add_artifact("Project", f"/o/{job.organization.slug}/projects/{project.slug}/")
        return stats
