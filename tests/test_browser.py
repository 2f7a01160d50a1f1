"""The job console in a real browser: Chromium driven by Playwright.

Retry a failed job from its page, watch a real `jobworker` run it to
SUCCESSFUL, and see the dashboard's chart. Screenshots go to
artifacts/screenshots/. If Chromium cannot start, the test fails (CI installs
it; see .ci/run).
"""

import pytest
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from jobs.models import Job, JobStatus

from .helpers import ROOT, make_job

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "reporadar/tasks.py", line 12, in add\n'
    "ValueError: the first attempt fails on purpose\n"
)


@pytest.fixture
def page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # the test makes between browser steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def failed_job():
    return make_job(
        task_path="tests.testapp.tasks.add",
        args=[2, 3],
        status=JobStatus.FAILED,
        attempts=1,
        max_attempts=1,
        worker_ids=["ci-host:1:abcdef"],
        errors=[
            {
                "exception_class_path": "builtins.ValueError",
                "message": "the first attempt fails on purpose",
                "traceback": TRACEBACK,
                "attempt": 1,
                "worker_id": "ci-host:1:abcdef",
                "failed_at": timezone.now().isoformat(),
            }
        ],
        finished_at=timezone.now(),
    )


def log_in(page, base_url):
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    expect(page.locator("#job-console-links")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_browser__retry_a_failed_job_and_watch_it_succeed(
    page, live_server, django_user_model, start_worker
):
    django_user_model.objects.create_superuser("admin", "a@example.org", "pw")
    job = failed_job()
    start_worker("--concurrency", "1")
    log_in(page, live_server.url)

    page.goto(f"{live_server.url}/admin/jobs/job/{job.pk}/change/")
    expect(page.locator(".job-error pre")).to_contain_text("ValueError: the first")
    page.screenshot(path=SCREENSHOTS / "job-failed.png", full_page=True)
    page.click("#job-retry")
    expect(page.locator(".messagelist")).to_contain_text("Retried 1 job.")
    for _ in range(60):
        if Job.objects.get(pk=job.pk).status == JobStatus.SUCCESSFUL:
            break
        page.wait_for_timeout(500)
    page.reload()
    expect(page.locator(".job-badge")).to_have_text("Successful")
    page.screenshot(path=SCREENSHOTS / "job-successful.png", full_page=True)

    page.goto(f"{live_server.url}/admin/jobs/job/dashboard/")
    expect(page.locator("#throughput-chart")).to_be_visible()
    expect(page.locator("#job-dashboard")).to_contain_text("completed: 1")
    page.screenshot(path=SCREENSHOTS / "dashboard.png", full_page=True)
    assert Job.objects.get(pk=job.pk).return_value == 5
