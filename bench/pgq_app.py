"""The PgQueuer baseline: the factory `pgq run` starts, in the baselines' venv.

    pgq run bench.pgq_app:create --batch-size 10 --mode drain

As its quick start shows: one asyncpg connection, async entrypoints. The
blocking sleep runs through `asyncio.to_thread`, as PgQueuer says blocking
code must (its default executor refuses sync entrypoints).
"""

import asyncio
import os
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from bench import tasks


@asynccontextmanager
async def create():
    """Yield a PgQueuer with the bench's two entrypoints."""
    connection = await asyncpg.connect(dsn=os.environ["DATABASE_URL"])
    pgq = PgQueuer.from_asyncpg_connection(connection)

    @pgq.entrypoint("noop")
    async def noop(job):
        tasks.noop()

    @pgq.entrypoint("sleep10ms")
    async def sleep10ms(job):
        await asyncio.to_thread(tasks.sleep10ms)

    yield pgq


def enqueue(task, jobs):
    """Insert `jobs` jobs in one statement, as PgQueuer's drain benchmark does."""
    asyncio.run(_enqueue(task, jobs))


async def _enqueue(task, jobs):
    connection = await asyncpg.connect(dsn=os.environ["DATABASE_URL"])
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.enqueue([task] * jobs, [None] * jobs, [0] * jobs)
    finally:
        await connection.close()
