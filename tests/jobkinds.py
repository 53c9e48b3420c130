"""Job kinds used only by tests (loaded through JOB_EXTRA_MODULES in the worker too)."""

from __future__ import annotations

import time

from projects.background import JobKind, register


@register
class SlowCountJob(JobKind):
    """Counts to `steps`, sleeping `delay` seconds per step, reporting progress each step."""

    name = "tests.slow_count"
    title = "Slow count (test)"
    needs_project = False

    @classmethod
    def clean_params(cls, params):
        return {"steps": int(params.get("steps", 5)), "delay": float(params.get("delay", 0.2))}

    def run(self, job, ctx):
        steps, delay = job.params["steps"], job.params["delay"]
        for step in range(steps):
            ctx.progress(step / steps, f"step {step + 1} of {steps}", force=True)
            time.sleep(delay)
        ctx.progress(1.0, "counted", force=True)
        return {"counted": steps}


@register
class FailingJob(JobKind):
    name = "tests.failing"
    title = "Failing job (test)"
    needs_project = False

    def run(self, job, ctx):
        ctx.progress(0.5, "about to fail", force=True)
        raise ValueError("the input file has no rows; upload a file with at least one row")


@register
class SilentSleepJob(JobKind):
    """Sleeps without reporting: only the heartbeat says it is alive."""

    name = "tests.silent_sleep"
    title = "Silent sleep (test)"
    needs_project = False

    @classmethod
    def clean_params(cls, params):
        return {"seconds": float(params.get("seconds", 30))}

    def run(self, job, ctx):
        ctx.progress(0.1, "sleeping", force=True)
        time.sleep(job.params["seconds"])
        return {}
