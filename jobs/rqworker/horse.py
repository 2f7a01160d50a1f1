"""The forking worker's work horse: one process, forked once and kept for
many RQ jobs, as Celery's prefork pool keeps its children.

The worker claims an RQ job's rows and hands them to its horse (`HandOver`);
the horse runs them one after the other and reports each start and end; the
worker records them and does RQ's bookkeeping itself, on its own Redis
connection. So a job costs neither a fork nor a new Redis connection, and a
task that crashes its process still cannot take the worker down.

A horse is replaced by a new one, forked for the next RQ job:
- when it dies (the job it was running is charged an attempt at once);
- when the worker ends it at a job's hard limit (`JOB_TIMEOUT_GRACE_SECONDS`
  past its timeout);
- after `JOB_HORSE_MAX_JOBS` RQ jobs (1: a new horse for every RQ job).
A horse ends when its worker closes their pipe, or as soon as it sees that
its worker is gone.

The pipe: the worker sends the claimed rows pickled (the horse unpickles
only what its own worker sent, never anything read from Redis); the horse
answers in JSON, so the worker unpickles nothing.
"""

import json
import logging
import mmap
import os
import random
import signal
import time
from contextlib import suppress
from multiprocessing import Pipe
from multiprocessing.connection import wait

from django.db import close_old_connections, connections
from rq.timeouts import JobTimeoutException

from .. import conf
from ..exceptions import JobTimeout
from ..notify.pusher import pusher
from .leases import database_in_use
from .timeouts import JobsDeathPenalty
from .unrecorded import unrecorded

logger = logging.getLogger("jobs.rq")


# How long a horse told to end may take before the worker kills it.
RETIRE_SECONDS = 10


class HorseDied(Exception):  # noqa: N818 (it names what happened)
    """The work horse ended while it ran the jobs handed over to it."""


class Horse:
    """The worker's side of a kept work horse."""

    def __init__(self):
        """Fork the horse (raises OSError when the system cannot)."""
        ours, theirs = Pipe()
        self.stop_flag = mmap.mmap(-1, 1)  # set: start no further job
        self.worker_pid = os.getpid()
        try:
            with database_in_use:  # no thread of the worker is in the database
                pid = os.fork()
                if pid == 0:
                    ours.close()
                    serve(theirs, self.stop_flag, self.worker_pid)  # never returns
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        with suppress(OSError):  # as the horse does: then it can be ended at once
            os.setpgid(pid, pid)
        self.pid, self.pipe, self.runs = pid, ours, 0
        self.pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        self.alive = True
        self.status = None  # its wait status, once reaped

    def run(self, hand_over, heartbeat, every):
        """Hand `hand_over`'s jobs to the horse and wait for its report.

        Returns the horse's summary. Raises HorseDied when it died, and
        JobTimeout when it outlived the job's hard limit (it is ended).
        Calls `heartbeat()` every `every` seconds meanwhile.
        """
        self.runs += 1
        self.stop_flag[0] = 0
        try:
            self.pipe.send((hand_over.jobs, hand_over.timeout, hand_over.claimed_at))
        except OSError:  # it ended since `fit` looked: none of them started
            self.died()
        hand_over.sent = True
        deadline = hand_over.hard_limit()
        waiting = [self.pipe, *([self.pidfd] if self.pidfd is not None else [])]
        while True:
            now = hand_over.clock()
            if deadline is not None and now >= deadline:
                self.end(hand_over)
                raise JobTimeout(f"job {hand_over.jobs[0].pk} ended at its hard limit")
            limit = every if deadline is None else min(every, deadline - now)
            if self.pidfd is None:  # then look for a dead horse once a second
                limit = min(limit, 1)
            ready = wait(waiting, limit)
            if self.pipe in ready:
                try:
                    kind, value = json.loads(self.pipe.recv_bytes())
                except EOFError:
                    self.died()
                if kind == "done":
                    return value
                hand_over.report.append(value)
            elif ready or self.exited():
                self.drain(hand_over)
                self.died()
            elif deadline is None or hand_over.clock() < deadline:
                heartbeat()

    def fit(self):
        """Say whether the idle horse still runs: it may have been killed
        (or ended itself) since its last job. An idle horse writes nothing,
        so a readable pipe means it ended."""
        return not self.pipe.poll(0) and not self.exited(check=True)

    def drain(self, hand_over):
        """Read what the horse wrote before it died."""
        try:
            while self.pipe.poll(0):
                kind, value = json.loads(self.pipe.recv_bytes())
                if kind == "report":
                    hand_over.report.append(value)
        except (EOFError, OSError, ValueError):
            pass

    def exited(self, check=False):
        """Say whether the horse ended; without `check`, only where no pidfd
        tells (the waits watch it)."""
        if self.pidfd is not None and not check:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid:
            self.status = status
        return bool(pid)

    def died(self):
        status = self.reap()
        raise HorseDied(f"the work horse {self.pid} died ({describe(status)})")

    def end(self, hand_over):
        """End the horse at the job's hard limit: it and the processes it started."""
        logger.warning(
            "job %s ran %g s past its timeout of %d s; ending its work horse",
            hand_over.jobs[0].pk,
            conf.get("JOB_TIMEOUT_GRACE_SECONDS"),
            hand_over.timeout,
        )
        hand_over.overran = hand_over.timeout
        self.kill()
        self.reap()

    def kill(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def reap(self):
        """Wait for the horse's end; return its wait status (None: unknown)."""
        self.alive = False
        self.pipe.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if self.status is None:
            with suppress(ChildProcessError):  # RQ's cold shutdown reaped it
                self.status = os.waitpid(self.pid, 0)[1]
        return self.status

    def retire(self):
        """End the idle horse: tell it so, and wait for it (killed if it
        has not ended within RETIRE_SECONDS)."""
        if not self.alive:
            return
        with suppress(OSError):  # ended already
            self.pipe.send(None)
        deadline = time.monotonic() + RETIRE_SECONDS
        while not self.exited(check=True) and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.status is None:
            self.kill()
        self.reap()

    def spent(self):
        return self.runs >= max(1, conf.get("JOB_HORSE_MAX_JOBS"))


def describe(status):
    if status is None:
        return "status unknown"
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def serve(pipe, stop_flag, worker_pid):
    """In the horse: run what the worker hands over until it says to end,
    closes the pipe or is gone. Never returns."""
    from . import handover

    status = 0
    try:
        become_horse()
        while (message := receive(pipe, worker_pid)) is not None:
            jobs, timeout, claimed_at = message
            hand_over = handover.HandOver.in_horse(
                jobs, timeout, claimed_at, Report(pipe), stop_flag, worker_pid
            )
            handover.handed_over = hand_over  # what its tasks may look at
            summary = run(hand_over)
            pipe.send_bytes(json.dumps(["done", summary]).encode())
    except BaseException:
        logger.exception("the work horse failed")
        status = 1
    finally:
        os._exit(status)


def become_horse():
    """In a new kept horse: its own process group and signals."""
    leave_the_worker()
    random.seed()
    os.setpgrp()  # the worker ends the horse with the processes it started
    # Ctrl+C in a terminal is the worker's to handle (it lets the job finish).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def leave_the_worker():
    """In a work horse: nothing of the worker's but its code and settings."""
    database_in_use.release()  # held by the worker's thread that forked
    # The worker's connections are its sockets: closing or using them here
    # would break them for the worker. psycopg does not close a connection
    # collected in another process than the one that made it.
    for alias in connections:
        connections[alias] = connections.create_connection(alias)
    # The worker's unrecorded successes are the worker's to record; the horse
    # records only its failures, at once.
    unrecorded.outcomes = []
    unrecorded.deferring = False


def receive(pipe, worker_pid):
    """Wait for the next hand-over; None once the worker says to end, closed
    the pipe or is gone (a process it forked since may hold the pipe open)."""
    while not pipe.poll(1):
        if os.getppid() != worker_pid:
            return None
    try:
        return pipe.recv()
    except EOFError:
        return None


def run(hand_over):
    """Run the jobs handed over under their soft limit (RQ's alarm, as
    RQ's own horse has it); then push what they enqueued."""
    try:
        if hand_over.timeout > 0:
            with JobsDeathPenalty(hand_over.timeout, JobTimeoutException):
                return hand_over.run_jobs()
        return hand_over.run_jobs()
    finally:
        pusher.flush(timeout=5)
        close_old_connections()  # broken or expired ones, between hand-overs


class Report:
    """In the horse: the report lines, sent to the worker as written."""

    def __init__(self, pipe):
        self.pipe = pipe

    def write(self, text):
        self.pipe.send_bytes(json.dumps(["report", text]).encode())

    def flush(self):
        pass
