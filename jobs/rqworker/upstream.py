"""Where the RQ path leans on RQ's internals, as rq `RQ_VERSION` has them.

Most RQ methods our worker, queue and death-penalty classes override are
not documented hooks, and RQ changes them in minor releases: an override
whose method was renamed is silently never called again. Each is listed
here with the signature (`str(inspect.signature(...))`) it has in the rq
named below, and why we override it; so are the internal methods we call
and the private attributes we read. `tests/test_rq_upstream.py` fails,
naming the method, when the installed rq differs from this table, or when
one of our classes overrides an RQ method the table does not list.

Upgrading rq: read each method below in the new release, adapt our code,
then update its signature here and `RQ_VERSION`.
"""

from typing import NamedTuple

# The rq release whose source this table was read from (see uv.lock).
RQ_VERSION = "2.12.0"


class Override(NamedTuple):
    signature: str  # of RQ's method, in RQ_VERSION
    why: str  # what our override adds, and why no public option does it


# RQ's methods that our classes override, keyed by the class defining them
# in rq. The two public ones (`__init__`, `work`) are listed too, so the
# test can tell a new override from an old one.
OVERRIDES = {
    "BaseWorker.__init__": Override(
        "(self, queues: 'str | Queue | Sequence[str] | Sequence[Queue]', "
        "name: 'str | None' = None, default_result_ttl=500, "
        "connection: 'Redis | None' = None, exception_handlers=None, "
        "maintenance_interval: 'int' = 600, default_worker_ttl: 'int | None' = None, "
        "worker_ttl: 'int | None' = None, job_class: 'type[Job] | str | None' = None, "
        "queue_class: 'type[Queue] | str | None' = None, "
        "log_job_description: 'bool' = True, job_monitoring_interval=30, "
        "disable_default_exception_handler: 'bool' = False, "
        "prepare_for_work: 'bool' = True, "
        "serializer: 'Serializer | str | None' = None, "
        "work_horse_killed_handler: "
        "'Callable[[Job, int, int, struct_rusage], None] | None' = None)",
        "Public. JSON whatever `--serializer` says, queues expanded to their "
        "priority bands, `queue_class` made a RecordingQueue.",
    ),
    "BaseWorker.work": Override(
        "(self, burst: 'bool' = False, logging_level: 'str | None' = None, "
        "date_format: 'str' = '%H:%M:%S', "
        "log_format: 'str' = '%(asctime)s %(message)s', "
        "max_jobs: 'int | None' = None, max_idle_time: 'int | None' = None, "
        "with_scheduler: 'bool' = False, "
        "dequeue_strategy: 'DequeueStrategy' = <DequeueStrategy.DEFAULT: 'default'>)"
        " -> 'bool'",
        "Public. Always with RQ's scheduler; our Maintainer thread, deferred "
        "recording of successes and (simple worker) the watchdog around it.",
    ),
    "BaseWorker.heartbeat": Override(
        "(self, timeout: 'int | None' = None, pipeline: 'Pipeline | None' = None)",
        "Renew the worker key at most once a second (RQ does it three times a "
        "job) and carry on without Redis; no option throttles it.",
    ),
    "BaseWorker.check_for_suspension": Override(
        "(self, burst: 'bool')",
        "Ask Redis about `rq suspend` at most once a second, not before every "
        "job, and carry on without Redis.",
    ),
    "BaseWorker.set_state": Override(
        "(self, state: 'str', pipeline: 'Pipeline | None' = None)",
        "Skip RQ's second IDLE write between two jobs, a round trip.",
    ),
    "BaseWorker.run_maintenance_tasks": Override(
        "(self)",
        "Carry on without Redis (stock RQ quits); `maintenance_interval` only "
        "says when it runs.",
    ),
    "BaseWorker.handle_execution_ended": Override(
        "(self, job: 'Job', queue: 'Queue', heartbeat_ttl: 'int')",
        "After a success of ours, leave the job heartbeat to the job hash RQ "
        "saves next instead of a write of its own.",
    ),
    "BaseWorker.dequeue_job_and_maintain_ttl": Override(
        "(self, timeout: 'int | None', max_idle_time: 'int | None' = None)"
        " -> 'tuple[Job, Queue] | None'",
        "Wait for Redis also when RQ marks the worker idle before the dequeue.",
    ),
    "BaseWorker.request_stop": Override(
        "(self, signum, frame)",
        "Remember the request, so that a StopRequested swallowed where the "
        "signal landed (a log handler) still stops an idle worker.",
    ),
    "BaseWorker.handle_warm_shutdown_request": Override(
        "(self)",
        "On SIGTERM, tell the work horse to start no further job of its batch "
        "(the rest go back to the queue); RQ's own only logs.",
    ),
    "Worker.execute_job": Override(
        "(self, job: 'Job', queue: 'Queue')",
        "Claim the batch's rows, hand them to the kept work horse (horse.Horse) "
        "while RQ's bookkeeping runs in the worker, and record the horse's "
        "report after (HandOver); carry on when Redis fails around a job.",
    ),
    "SimpleWorker.execute_job": Override(
        "(self, job: 'Job', queue: 'Queue')",
        "Carry on when Redis fails around a job.",
    ),
    "Worker.monitor_work_horse": Override(
        "(self, job: 'Job', queue: 'Queue')",
        "Look at the horse every second while a job of ours with a timeout "
        "runs; the `job_monitoring_interval` option would change every job's "
        "monitoring and the horse's heartbeat TTLs.",
    ),
    "BaseWorker.maintain_heartbeats": Override(
        "(self, job: 'Job')",
        "End a horse at its hard limit, JOB_TIMEOUT_GRACE_SECONDS past its "
        "timeout (RQ waits 60 s).",
    ),
    "Worker.fork_work_horse": Override(
        "(self, job: 'Job', queue: 'Queue')",
        "Fork outside any database call (`database_in_use`); a failed fork "
        "gives the claimed job back (ForkFailed).",
    ),
    "BaseWorker.main_work_horse": Override(
        "(self, job: 'Job', queue: 'Queue')",
        "In the horse: new database connections, none of the worker's "
        "unrecorded successes.",
    ),
    "BaseWorker.perform_job": Override(
        "(self, job: 'Job', queue: 'Queue') -> 'bool'",
        "In the forking worker, without RQ's alarm (the kept horse has the "
        "soft limit, the worker the hard one); in a horse of RQ's own, after "
        "its job, push what it enqueued and close its connections (it exits "
        "without atexit); the simple worker tidies its connections.",
    ),
    "Queue.dequeue_any": Override(
        "(queues: 'Iterable[Queue]', timeout: 'int | None', connection: 'Redis', "
        "job_class: 'type[Job] | None' = None, "
        "serializer: 'Serializer | str | None' = None, "
        "death_penalty_class: 'type[BaseDeathPenalty] | None' = None)"
        " -> 'tuple[Job, Queue] | None'",
        "Record unrecorded successes before the worker waits for a job; give "
        "back a row claimed at a pop that RQ fails to hand over (it calls "
        "`lpop`, then fetches the RQ job, popping again if its hash is gone).",
    ),
    "Queue.lpop": Override(
        "(queue_keys: 'Sequence[str]', timeout: 'int | None', "
        "connection: 'Redis | None' = None)",
        "Pop the first band holding a job in one LMPOP, not one LPOP a band; "
        "claim the popped RQ job's first row at once (`claim_at_pop`).",
    ),
    "UnixSignalDeathPenalty.handle_death_penalty": Override(
        "(self, signum, frame)",
        "Raise our JobTimeout, a BaseException a task's `except Exception:` "
        "cannot swallow.",
    ),
    "BaseDeathPenalty.__exit__": Override(
        "(self, type, value, traceback)",
        "A JobTimeout raised as the body ended is no timeout.",
    ),
}

# RQ's internal methods we call without overriding them, and their signatures.
CALLED = {
    "Worker.kill_horse": "(self, sig: 'signal.Signals' = <Signals.SIGKILL: 9>)",
    "BaseWorker.handle_job_failure": (
        "(self, job: 'Job', queue: 'Queue', started_job_registry=None, exc_string='')"
    ),
    "BaseWorker.stop_scheduler": "(self)",
    "RQScheduler.acquire_locks": "(self, auto_start=False)",
}

# RQ's private attributes we read or write, set by each class's constructor.
PRIVATE_ATTRIBUTES = {
    "BaseWorker": ("_horse_pid", "_state"),
    "RQScheduler": ("_process",),
    "BaseDeathPenalty": ("_timeout", "_exception"),
}
