"""Example tasks, enqueued by `manage.py dev` to show every outcome."""

import time

from django.tasks import task

from .exceptions import PermanentFailure


@task(priority=10)
def analyze_repository(repo_url: str) -> dict:
    """Succeed at once with a small summary."""
    return {"repo_url": repo_url, "files": 42, "languages": ["Python"]}


@task(takes_context=True)
def index_repository(context, repo_url: str, steps: int = 5) -> dict:
    """Report progress step by step, then succeed."""
    for step in range(1, steps + 1):
        time.sleep(1)
        context.report_progress(step * 100 // steps, f"indexed part {step}/{steps}")
    return {"repo_url": repo_url, "parts": steps}


@task(takes_context=True, max_attempts=3)
def flaky_fetch(context, repo_url: str) -> str:
    """Fail on the first attempt, succeed on the retry."""
    if context.attempt == 1:
        raise ConnectionError(f"could not reach {repo_url} (first attempt fails)")
    return f"fetched {repo_url} on attempt {context.attempt}"


@task(max_attempts=2, backoff_base=2)
def broken_import(repo_url: str) -> None:
    """Always fail: shows retries and the kept failure with its traceback."""
    raise RuntimeError(f"{repo_url} is not a git repository")


@task
def reject_repository(repo_url: str) -> None:
    """Fail permanently without retrying."""
    raise PermanentFailure(f"{repo_url} is private; not retrying")


def enqueue_examples():
    """Enqueue one job of each example; return their results."""
    url = "https://example.org/reporadar.git"
    return [
        analyze_repository.enqueue(repo_url=url),
        index_repository.enqueue(repo_url=url),
        flaky_fetch.enqueue(repo_url=url),
        broken_import.enqueue(repo_url=url),
        reject_repository.enqueue(repo_url=url),
    ]
