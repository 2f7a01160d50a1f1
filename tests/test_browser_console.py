"""The console's read side in a real browser (Chromium, Playwright): the
per-task table sorted by a column, a job's timeline, and the dashboard's
chart over 24 hours. Screenshots go to artifacts/screenshots/."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from jobs.models import JobStatus

from .helpers import make_job
from .test_browser import SCREENSHOTS, failed_job, log_in, page  # noqa: F401 (fixture)


def finished(task_path, seconds, ago, status=JobStatus.SUCCESSFUL, attempts=1):
    end = timezone.now() - ago
    return make_job(
        task_path=task_path,
        status=status,
        attempts=attempts,
        worker_ids=[f"ci-host:1:w{n}" for n in range(attempts)],
        started_at=end - timedelta(seconds=seconds),
        last_attempted_at=end - timedelta(seconds=seconds),
        finished_at=end,
    )


@pytest.mark.django_db(transaction=True)
def test_browser__per_task_table_timeline_and_the_day_chart(
    page,  # noqa: F811 (the fixture)
    live_server,
    django_user_model,
):
    django_user_model.objects.create_superuser("admin", "a@example.org", "pw")
    for seconds in (0.2, 0.4, 1.5):
        finished("reporadar.tasks.analyze_repository", seconds, timedelta(minutes=3))
    finished("reporadar.tasks.send_digest", 12, timedelta(hours=5), attempts=2)
    job = failed_job()
    log_in(page, live_server.url)

    page.goto(f"{live_server.url}/admin/jobs/job/dashboard/")
    page.click("#task-table-link")
    expect(page.locator("#task-table")).to_be_visible()
    page.click("a.sort-by[data-key='runs_1d']")  # most runs first
    first = page.locator("tr.task-row").first
    expect(first).to_have_attribute("data-task", "reporadar.tasks.analyze_repository")
    expect(page.locator("tr[data-task='tests.testapp.tasks.add']")).to_contain_text(
        "the first attempt fails on purpose"
    )
    page.screenshot(path=SCREENSHOTS / "per-task-table.png", full_page=True)

    page.click("tr[data-task='tests.testapp.tasks.add'] td.failure a")
    expect(page.locator("#job-timeline")).to_contain_text("Attempt 1")
    expect(page.locator(".job-attempt-failed")).to_contain_text("ci-host:1:abcdef")
    assert str(job.pk) in page.url
    page.screenshot(path=SCREENSHOTS / "job-timeline.png", full_page=True)

    page.goto(f"{live_server.url}/admin/jobs/job/dashboard/")
    page.click("a.chart-range:text('24h')")
    expect(page.locator("#chart-ranges strong")).to_have_text("24h")
    expect(page.locator("#job-dashboard")).to_contain_text("completed: 4")
    expect(page.locator("#job-dashboard")).to_contain_text("retried: 1")
    page.screenshot(path=SCREENSHOTS / "dashboard-24h.png", full_page=True)
