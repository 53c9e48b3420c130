"""The platform shell in a real browser: sign-up to finished job, live updates, invitations.

Each test runs a real ASGI server (uvicorn: HTTP and websockets) and, where jobs run, a
real RQ worker; Chromium drives the pages as a person would. A JavaScript error in any
page fails the test (see tests/e2e/conftest.py).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from projects import actions
from projects.models import Job, JobStatus, Membership, Role
from tests.e2e.conftest import in_thread, log_in, screenshot, sign_up

pytestmark = pytest.mark.e2e

JOB_TIMEOUT = 30_000  # ms: worker start (Django set-up) plus the job itself


def sections(page: Page):
    return page.get_by_role("navigation", name="Sections")


def mark_page(page: Page) -> None:
    """Leave a marker in this document; it survives only if the page is never reloaded."""
    page.evaluate("window.__marker = 1")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def wait_for_live_socket(page: Page) -> None:
    """live.js sets <body data-live="ws"> once the job socket is open."""
    expect(page.locator("body")).to_have_attribute("data-live", "ws")


@pytest.mark.worker
def test_signup_to_finished_job(page: Page, start_worker):
    # Anonymous visitors land on the login page, and find the way to sign up there.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    sign_up(page, "alice", "correct-horse-battery-42")

    # A new account has no organisation yet: it is asked to create one.
    expect(page.get_by_role("heading", name="New organisation")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Welcome!")
    page.get_by_label("Name").fill("Alice Labs")
    page.get_by_role("button", name="Create organisation").click()
    expect(page.get_by_role("heading", name="Alice Labs", level=1)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Organisation Alice Labs created; you are its owner.")
    expect(page.get_by_role("combobox", name="Organisation")).to_have_value("/o/alice-labs/")
    expect(page.get_by_text("No projects yet.")).to_be_visible()

    # Projects: create one, find it in the list, open it.
    sections(page).get_by_role("link", name="Projects").click()
    expect(page.get_by_role("heading", name="Projects", level=1)).to_be_visible()
    expect(page.get_by_text("No active projects.")).to_be_visible()
    new_project = page.locator("#new-project")
    new_project.get_by_label("Name").fill("Cardiology")
    new_project.get_by_label("Description").fill("ECG reports, 2019–2024.")
    new_project.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Cardiology", level=1)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Project Cardiology created.")
    page.get_by_role("link", name="Projects", exact=True).first.click()
    row = page.get_by_role("row").filter(has_text="Cardiology")
    expect(row).to_contain_text("ECG reports, 2019–2024.")
    row.get_by_role("link", name="Cardiology").click()
    expect(page.get_by_role("heading", name="Cardiology", level=1)).to_be_visible()
    expect(page.get_by_text("Not counted yet.")).to_be_visible()

    # Start a job. The worker starts only once the job page is open, so the page is
    # rendered with the job queued and everything after that arrives live.
    page.get_by_role("button", name="Recount statistics").click()
    expect(page.get_by_role("heading", name=re.compile(r"^#\d+ Recount project statistics$"))).to_be_visible()
    panel = page.locator(".job-panel")
    bar = panel.get_by_role("progressbar")
    expect(panel.locator("[data-field=status_label]")).to_have_text("Queued")
    expect(bar).to_have_attribute("aria-valuenow", "0")
    mark_page(page)
    wait_for_live_socket(page)
    start_worker()

    expect(panel.locator("[data-field=status_label]")).to_have_text("Succeeded", timeout=JOB_TIMEOUT)
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(bar.locator(".bar")).to_have_attribute("style", re.compile(r"width:\s*100%"))
    assert bar.locator(".bar").evaluate("el => el.style.width") == "100%"
    expect(panel.locator("[data-field=percent]")).to_have_text("100")
    expect(panel.locator("[data-field=message]")).to_have_text("Statistics updated")
    expect(panel.get_by_role("button", name="Cancel")).to_be_hidden()
    expect(panel.get_by_role("button", name="Retry")).to_be_hidden()
    assert_not_reloaded(page)
    # The fill really spans the track once its CSS transition (0.3 s) is over.
    page.wait_for_function(
        """() => { const fill = document.querySelector('.job-panel .progress .bar');
                  const track = fill.parentElement.getBoundingClientRect().width;
                  return fill.getBoundingClientRect().width >= track - 0.5; }"""
    )
    screenshot(page, "job-finished.png")

    # The project now shows its statistics.
    page.locator("dl.facts").get_by_role("link", name="Cardiology").click()
    expect(page.get_by_role("heading", name="Cardiology", level=1)).to_be_visible()
    facts = page.locator("dl.facts")
    expect(facts.locator("dt", has_text="Members")).to_be_visible()
    expect(facts.locator("dt:has-text('Members') + dd")).to_have_text("1")
    # The first count: no other jobs in the project yet (a recount does not count itself).
    expect(facts.locator("dt:has-text('status') + dd")).to_contain_text("Succeeded: 0")
    expect(facts.locator("dt:has-text('kind') + dd")).to_have_text("none")
    expect(page.get_by_text("Not counted yet.")).to_have_count(0)
    job_row = page.get_by_role("row").filter(has_text="Recount project statistics")
    expect(job_row.locator("[data-field=status_label]")).to_have_text("Succeeded")
    screenshot(page, "project.png")

    # The dashboard sums it up.
    sections(page).get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Alice Labs", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="1 project", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="0 jobs queued or running")).to_be_visible()
    expect(page.get_by_role("link", name="1 member", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Cardiology")).to_be_visible()
    screenshot(page, "dashboard.png")


@pytest.mark.worker
def test_job_list_updates_live(page: Page, actors, start_worker):
    job = in_thread(
        actions.do_enqueue_job, actors.org, "tests.slow_count", user=actors.member, params={"steps": 6, "delay": 0.4}
    )
    log_in(page, "bob")
    page.goto(f"/o/{actors.org.slug}/jobs/")
    row = page.locator(f'tr[data-job-id="{job.pk}"]')
    status = row.locator("[data-field=status_label]")
    expect(status).to_have_text("Queued")
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "0")
    mark_page(page)
    wait_for_live_socket(page)

    start_worker()
    expect(status).to_have_text("Running", timeout=JOB_TIMEOUT)
    expect(row.locator(".badge")).to_have_class("badge status-running")
    expect(status).to_have_text("Succeeded", timeout=JOB_TIMEOUT)
    expect(row.locator(".badge")).to_have_class("badge status-succeeded")
    expect(row.locator("[data-field=percent]")).to_have_text("100")
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(row.locator("[data-field=message]")).to_have_text("counted")
    assert_not_reloaded(page)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


def _invite(owner_page: Page, org_slug: str, role_label: str) -> str:
    """Create an invitation in Settings; return the link from the flash message."""
    owner_page.goto(f"/o/{org_slug}/settings/")
    owner_page.get_by_label("Role", exact=True).select_option(label=role_label)
    owner_page.get_by_role("button", name="Create invitation link").click()
    message = owner_page.get_by_role("status")
    expect(message).to_contain_text(f"Invitation created for the {role_label.lower()} role.")
    match = re.search(r"https?://\S+/join/\S+/", message.inner_text())
    assert match, message.inner_text()
    return match.group(0)


def test_invitation_link(new_page, actors, asgi_server):
    owner = new_page("owner")
    log_in(owner, "alice")
    member_link = _invite(owner, actors.org.slug, "Member")
    assert member_link.startswith(asgi_server.url + f"/join/{actors.org.slug}/")
    viewer_link = _invite(owner, actors.org.slug, "Viewer")
    expect(owner.get_by_role("heading", name="Pending invitations")).to_be_visible()
    screenshot(owner, "settings-invitation.png")

    # Someone without an account opens the member link: log in first, or sign up.
    dora = new_page("dora")
    dora.goto(member_link)
    expect(dora).to_have_url(re.compile(r"/accounts/login/\?next=/join/"))
    dora.get_by_role("link", name="Create an account").click()
    sign_up(dora, "dora", "correct-horse-battery-42")
    # Sign-up carries the invitation along: she is back on the invitation page.
    expect(dora.get_by_text("You are invited to join Alice Labs as member.")).to_be_visible()
    dora.get_by_role("button", name="Join Alice Labs").click()
    expect(dora.get_by_role("heading", name="Alice Labs", level=1)).to_be_visible()
    expect(dora.get_by_role("status")).to_contain_text("You joined Alice Labs as member.")
    # She also makes an organisation of her own ...
    dora.goto("/orgs/new/")
    dora.get_by_label("Name").fill("Dora Studio")
    dora.get_by_role("button", name="Create organisation").click()
    expect(dora.get_by_role("heading", name="Dora Studio", level=1)).to_be_visible()
    switcher = dora.get_by_role("combobox", name="Organisation")
    expect(switcher).to_have_value("/o/dora-studio/")
    expect(switcher.locator("option")).to_have_text(["Alice Labs", "Dora Studio", "+ New organisation…"])
    # ... and the switcher takes her between her organisations.
    switcher.select_option(label="Alice Labs")
    expect(dora.get_by_role("heading", name="Alice Labs", level=1)).to_be_visible()
    # A member may write: start jobs, create projects.
    dora.goto(f"/o/{actors.org.slug}/projects/{actors.project.slug}/")
    expect(dora.get_by_role("button", name="Recount statistics")).to_be_visible()
    dora.goto(f"/o/{actors.org.slug}/projects/")
    expect(dora.get_by_role("heading", name="New project")).to_be_visible()

    # The link works once.
    assert dora.goto(member_link).status == 410
    expect(dora.get_by_role("alert")).to_contain_text("This invitation has already been used.")

    # A viewer reads but sees no write buttons.
    victor = new_page("victor")
    victor.goto("/accounts/signup/")
    sign_up(victor, "victor", "correct-horse-battery-42")
    expect(victor.get_by_role("heading", name="New organisation")).to_be_visible()
    victor.goto(viewer_link)
    victor.get_by_role("button", name="Join Alice Labs").click()
    expect(victor.get_by_role("status")).to_contain_text("You joined Alice Labs as viewer.")
    expect(victor.get_by_role("combobox", name="Organisation")).to_have_value(f"/o/{actors.org.slug}/")
    expect(victor.locator(".topbar .role")).to_have_text("Viewer")
    victor.get_by_role("link", name="Cardiology").click()
    expect(victor.get_by_role("heading", name="Cardiology", level=1)).to_be_visible()
    expect(victor.get_by_role("heading", name="Statistics")).to_be_visible()
    expect(victor.get_by_role("button")).to_have_text(["Log out"])  # nothing but logging out
    sections(victor).get_by_role("link", name="Projects").click()
    expect(victor.get_by_role("link", name="Cardiology")).to_be_visible()
    expect(victor.get_by_role("heading", name="New project")).to_have_count(0)
    expect(victor.get_by_role("button", name="Create project")).to_have_count(0)

    # Both joined, with their roles, as the owner sees in Settings.
    owner.goto(f"/o/{actors.org.slug}/settings/")
    expect(owner.get_by_role("combobox", name="Role of dora")).to_have_value(Role.MEMBER)
    expect(owner.get_by_role("combobox", name="Role of victor")).to_have_value(Role.VIEWER)
    expect(owner.get_by_role("heading", name="Pending invitations")).to_have_count(0)
    assert Membership.objects.filter(organization=actors.org, user__username="victor", role=Role.VIEWER).exists()


@pytest.mark.worker
def test_job_panel_falls_back_to_polling_without_websocket(page: Page, actors, start_worker):
    """With the websocket refused, the job page still reaches Succeeded, by htmx polling."""
    # Every socket to /ws/ is answered by Playwright and closed at once, as a proxy that
    # does not pass websockets would; live.js then polls the panel every 2 s.
    page.route_web_socket(re.compile(r"/ws/"), lambda socket: socket.close(code=1011, reason="blocked by the test"))
    job = in_thread(
        actions.do_enqueue_job, actors.org, "projects.recount_stats", user=actors.member, project=actors.project
    )
    panel_requests = []
    page.on("request", lambda request: "fragment=panel" in request.url and panel_requests.append(request.url))
    log_in(page, "bob")
    page.goto(f"/o/{actors.org.slug}/jobs/{job.pk}/")
    panel = page.locator(".job-panel")
    expect(panel.locator("[data-field=status_label]")).to_have_text("Queued")
    mark_page(page)
    expect(page.locator("body")).to_have_attribute("data-live", "polling")

    start_worker()
    expect(panel.locator("[data-field=status_label]")).to_have_text("Succeeded", timeout=JOB_TIMEOUT)
    expect(panel.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(panel.locator("[data-field=percent]")).to_have_text("100")
    assert_not_reloaded(page)
    assert panel_requests, "the panel was never fetched again"
    # Finished: the panel stops asking.
    expect(panel).not_to_have_attribute("data-poll-url", re.compile(".*"))
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


@pytest.mark.worker
def test_job_started_by_someone_else_appears_live(new_page, actors, start_worker):
    """Alice watches the Jobs page; Bob starts a job elsewhere; its row appears, once, and finishes."""
    start_worker()
    alice = new_page("alice")
    log_in(alice, "alice")
    alice.goto(f"/o/{actors.org.slug}/jobs/")
    expect(alice.get_by_text("No jobs yet.")).to_be_visible()
    mark_page(alice)
    wait_for_live_socket(alice)

    bob = new_page("bob")
    log_in(bob, "bob")
    bob.goto(f"/o/{actors.org.slug}/projects/{actors.project.slug}/")
    bob.get_by_role("button", name="Recount statistics").click()
    expect(bob.locator(".job-panel [data-field=status_label]")).to_have_text("Succeeded", timeout=JOB_TIMEOUT)
    job = Job.objects.get(organization=actors.org)

    rows = alice.locator("tr[data-job-id]")
    expect(rows).to_have_count(1)
    row = alice.locator(f'tr[data-job-id="{job.pk}"]')
    expect(row.get_by_role("link")).to_have_text(re.compile(rf"#{job.pk} Recount project statistics"))
    expect(row.locator("[data-field=status_label]")).to_have_text("Succeeded")
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(alice.get_by_text("No jobs yet.")).to_be_hidden()
    alice.wait_for_timeout(500)  # a late duplicate would arrive now
    expect(rows).to_have_count(1)
    assert_not_reloaded(alice)
