"""Forget workers long silent in the worker registry."""

from datetime import timedelta

from .. import conf, worker_registry


def forget_dead_workers():
    """Drop registry rows of workers silent for ten leases (killed, lost)."""
    lease = conf.get("JOB_LEASE_SECONDS")
    return worker_registry.forget_dead(timedelta(seconds=10 * lease))
