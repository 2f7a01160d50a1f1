"""The benchmark harness runs end to end (`bench/run.py --quick`), and so
does the soak (`bench/soak.py` for a few seconds).

Smoke tests only: they prove the scripts work and report every figure. They
assert nothing about speed.
"""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from .helpers import ROOT

# The quick run drains with one worker; the 1M-row pages are left out. Every
# drain figure has its start-up-inclusive `.cold` twin.
DRAINS = [
    *(
        f"drain.{path}.{task}.1w"
        for path in ("pgqueuer", "procrastinate", "dtdb", "ours_db", "celery.solo")
        for task in ("noop", "sleep10ms")
    ),
    "drain.ours_db.noop_unique.1w",
    "drain.ours_db.noop_limited.1w",
    *(
        f"drain.{path}.{kind}.{task}.1w"
        for path in ("rq", "ours_rq")
        for kind in ("fork", "simple")
        for task in ("noop", "sleep10ms")
    ),
    "drain.ours_rq.pool5.sleep10ms",
]
EXPECTED = [
    "enqueue.rq.single",
    "enqueue.dtdb.single",
    "enqueue.rq.bulk",
    *(
        f"enqueue.{path}.{how}"
        for path in ("ours_db", "ours_redis")
        for how in ("single", "bulk", "8p")
    ),
    "enqueue.pgbench.8c",
    *DRAINS,
    *(f"{name}.cold" for name in DRAINS),
    *(
        f"pickup.{path}.{q}"
        for path in (
            "dtdb",
            "ours_db",
            "rq.simple",
            "ours_rq.simple",
            "rq.fork",
            "ours_rq.fork",
        )
        for q in ("p50", "p99")
    ),
    *(
        f"startup.{system}"
        for system in ("dtdb", "rq", "pgqueuer", "procrastinate", "celery")
    ),
    "startup.ours_db",
    "startup.ours_rq",
]


def server_url():
    """The test database's server, where the harness makes its own databases."""
    db = connection.settings_dict
    user = f"{db['USER']}@" if db.get("USER") else ""
    return f"postgres://{user}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"


@pytest.mark.timeout(400)
def test_quick_run__writes_every_figure_with_a_value(postgres_only, tmp_path):
    output = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--quick",
            "--json",
            str(output),
            "--postgres",
            server_url(),
            "--db-prefix",
            f"bench_t{os.getpid()}",
            "--logs",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text())

    assert results["errors"] == []
    assert sorted(results["figures"]) == sorted(EXPECTED)
    for name, figure in results["figures"].items():
        assert len(figure["values"]) == 1, name
        assert figure["median"] > 0, name
    assert results["figures"]["drain.ours_db.noop.1w"]["baseline"] == (
        "drain.dtdb.noop.1w"
    )
    # A second baseline, named by a target, has its ratio too.
    ratios = results["figures"]["drain.ours_db.noop.1w"]["ratios"]
    assert set(ratios) == {"drain.pgqueuer.noop.1w"}
    assert ratios["drain.pgqueuer.noop.1w"] > 0
    assert "drain.ours_db.noop.1w" in done.stdout  # the table


@pytest.mark.timeout(240)
def test_short_soak__samples_every_window_and_writes_the_json(postgres_only, tmp_path):
    output, logs = tmp_path / "soak.json", tmp_path / "logs"
    done = subprocess.run(
        [
            sys.executable,
            "bench/soak.py",
            "--minutes",
            "0.25",
            "--samples-every",
            "5",
            "--rate",
            "50",
            "--autovacuum",
            "off",
            "--hold-transaction",
            "0.05:2",
            "--json",
            str(output),
            "--logs",
            str(logs),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text())

    (run,) = results["runs"]
    assert run["server"]["autovacuum"] == "off"  # its own cluster, as asked
    assert [round(s["elapsed"]) for s in run["samples"]] == [5, 10, 15]
    assert sum(s["completed"] for s in run["samples"]) > 0
    assert run["hold"]["ended"] is not None
    assert set(run["verdicts"]) == {
        "completed",
        "backlog",
        "pickup_p99",
        "visible_p99",
        "overdue",
        "size",
    }
    # Pickup is also counted from each enqueue's commit, which the producer
    # recorded for every job that started.
    assert all(s["visible_p99_ms"] is not None for s in run["samples"] if s["started"])
    assert "pickup p99 <= 100 ms" in done.stdout  # the verdicts
    assert (logs / "autovacuum-off-postgres.log").exists()  # stopped, log kept


@pytest.mark.django_db
def test_big_table_fill__writes_finished_rows_the_current_schema_accepts(
    postgres_only,
):
    # The http part fills its table with one INSERT naming every column it
    # sets: a column added later without a default must be named there too.
    from bench.parts.http import FILL_SQL, PAST_RETENTION_SQL

    with connection.cursor() as cursor:
        cursor.execute(FILL_SQL, {"rows": 200})
        cursor.execute(PAST_RETENTION_SQL, {"rows": 50})
        cursor.execute("SELECT status, count(*) FROM jobs_job GROUP BY status")
        assert dict(cursor.fetchall()) == {"SUCCESSFUL": 248, "FAILED": 2}
