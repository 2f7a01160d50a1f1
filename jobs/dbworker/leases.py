"""Keeping the worker's claim on its jobs (lease renewal) and its entry in
the worker registry."""

from .. import conf, worker_registry
from ..core import transitions
from ..models import WorkerProcess


class Leases:
    """Renew the lease of every job the worker holds, and report the worker
    alive in the registry.

    A job is held from its claim until its run is recorded: waiting for a
    thread, running, or finished and not yet written. Leases and the
    registry entry are renewed every third of JOB_LEASE_SECONDS.
    """

    def __init__(self, worker_id, queues, concurrency, exchange, acks, listener):
        self.worker_id = worker_id
        self.queues = queues
        self.concurrency = concurrency
        self.exchange = exchange
        self.acks = acks
        self.listener = listener  # the registry says whether NOTIFY reaches it
        self.next_renewal = 0.0  # monotonic
        self.reported_hears = None

    def register(self):
        """Enter the worker in the registry of workers."""
        worker_registry.register(
            self.worker_id, WorkerProcess.Kind.DATABASE, self.queues, self.concurrency
        )

    def unregister(self):
        """Take the worker out of the registry of workers."""
        worker_registry.unregister(self.worker_id)

    def renew_if_due(self, now):
        """Renew the leases and report the worker alive, if it is time to or
        the listener found out whether NOTIFY reaches it."""
        hears = self.listener.hears
        if now < self.next_renewal and hears == self.reported_hears:
            return
        held = self.exchange.held_jobs() + self.acks.jobs()
        transitions.renew_leases(held)
        if not worker_registry.report_alive(self.worker_id, hears):
            self.register()
        self.reported_hears = hears
        self.next_renewal = now + conf.get("JOB_LEASE_SECONDS") / 3
