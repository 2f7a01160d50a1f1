"""The filter-wide retry in a real browser: filter the failed jobs of one
task, retry them all after the confirmation page, and watch a real
`jobworker` run them. Saves artifacts/screenshots/bulk-confirmation.png."""

import pytest
from playwright.sync_api import expect

from jobs.models import Job, JobStatus

from .helpers import make_failed_job
from .test_browser import SCREENSHOTS, log_in, page  # noqa: F401 (a fixture)

ADD = "tests.testapp.tasks.add"


@pytest.mark.django_db(transaction=True)
def test_browser__retry_all_failed_jobs_of_one_task_and_watch_them_run(
    page,  # noqa: F811 (the fixture imported above)
    live_server,
    django_user_model,
    start_worker,
):
    django_user_model.objects.create_superuser("admin", "a@example.org", "pw")
    adds = [make_failed_job(task_path=ADD, args=[i, 10]) for i in range(3)]
    other = make_failed_job(task_path="tests.testapp.tasks.always_fail")
    start_worker("--concurrency", "1")
    log_in(page, live_server.url)

    page.goto(f"{live_server.url}/admin/jobs/job/?status=FAILED&task={ADD}")
    page.click("#job-retry-all")
    expect(page.locator("#job-bulk-count")).to_have_text("3")
    expect(page.locator("#job-bulk-filter")).to_have_text(f"status Failed, task {ADD}")
    page.screenshot(path=SCREENSHOTS / "bulk-confirmation.png", full_page=True)
    page.click("#job-bulk-submit")
    expect(page.locator(".messagelist")).to_contain_text("Retried 3 of 3 jobs")

    for _ in range(120):
        done = Job.objects.filter(task_path=ADD, status=JobStatus.SUCCESSFUL)
        if done.count() == 3:
            break
        page.wait_for_timeout(500)
    assert [Job.objects.get(pk=j.pk).return_value for j in adds] == [10, 11, 12]
    assert Job.objects.get(pk=other.pk).status == JobStatus.FAILED
