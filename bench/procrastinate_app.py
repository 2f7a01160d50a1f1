"""The Procrastinate baseline: the app `procrastinate worker` runs, in the
baselines' venv, with the same job functions (`bench.tasks`) as sync tasks
(Procrastinate runs them in a thread).

    procrastinate --app bench.procrastinate_app.app worker --one-shot
"""

import os

from procrastinate import App, PsycopgConnector

from bench import tasks

app = App(connector=PsycopgConnector(conninfo=os.environ["DATABASE_URL"]))
noop = app.task(name="noop", queue="default")(tasks.noop)
sleep10ms = app.task(name="sleep10ms", queue="default")(tasks.sleep10ms)


def enqueue(task, jobs):
    """Defer `jobs` jobs in one statement (`Task.batch_defer`)."""
    with app.open():
        {"noop": noop, "sleep10ms": sleep10ms}[task].batch_defer(*[{}] * jobs)
