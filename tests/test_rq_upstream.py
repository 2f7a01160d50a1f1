"""The RQ internals our classes lean on are those of the installed rq, as
listed in `jobs/rqworker/upstream.py`."""

import importlib
import inspect
import pkgutil
from itertools import takewhile

import pytest
import redis
import rq
from rq.scheduler import RQScheduler
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

import jobs.rqworker
from jobs.rqworker import upstream
from jobs.rqworker.queues import recording

INSTALLED = f"rq {rq.__version__}"
TABLE = f"jobs/rqworker/upstream.py (read from rq {upstream.RQ_VERSION})"


def from_rq(cls):
    """Say whether `cls` is one of rq's classes."""
    return cls.__module__.split(".")[0] == "rq"


def our_classes():
    """Every class in `jobs.rqworker` built on an RQ class."""
    found = {recording(rq.Queue)}  # made at run time, on the worker's queue class
    for info in pkgutil.iter_modules(jobs.rqworker.__path__):
        module = importlib.import_module(f"jobs.rqworker.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and not from_rq(cls):
                found.add(cls)
    return {cls for cls in found if any(map(from_rq, cls.__mro__))}


def overrides(cls):
    """Yield 'RQClass.method' for each RQ method `cls` or its mixins override."""
    ours = list(takewhile(lambda k: not from_rq(k), cls.__mro__))
    theirs = [k for k in cls.__mro__ if from_rq(k)]
    names = {name for k in ours for name, value in vars(k).items() if method(value)}
    for name in names:
        defining = next((k for k in theirs if name in vars(k)), None)
        if defining is not None:
            yield f"{defining.__qualname__}.{name}"


def method(value):
    return inspect.isfunction(value) or isinstance(
        value, (classmethod, staticmethod, property)
    )


RQ_CLASSES = {
    k.__qualname__: k for cls in our_classes() for k in cls.__mro__ if from_rq(k)
} | {"RQScheduler": RQScheduler}


def rq_method(key):
    """Return the installed rq's method `key` ('Class.method'), or fail."""
    class_name, name = key.rsplit(".", 1)
    cls = RQ_CLASSES.get(class_name)
    assert cls is not None and name in vars(cls), (
        f"{INSTALLED} has no {key}, which {TABLE} lists: "
        "re-read what our code does with it"
    )
    return getattr(cls, name)


def test_our_classes__include_the_worker_queue_and_death_penalty_classes():
    names = {cls.__name__ for cls in our_classes()}
    assert {"JobsWorker", "JobsSimpleWorker", "RecordingQueue"} <= names
    assert "JobsDeathPenalty" in names


def test_every_rq_method_we_override__is_listed_in_the_table():
    overridden = {key for cls in our_classes() for key in overrides(cls)}
    listed = set(upstream.OVERRIDES)
    unlisted, stale = sorted(overridden - listed), sorted(listed - overridden)
    assert unlisted == [], f"we override {unlisted}; list them in {TABLE}"
    assert stale == [], f"{TABLE} lists {stale}, which nothing of ours overrides"


@pytest.mark.parametrize("key", sorted(upstream.OVERRIDES))
def test_overridden_rq_method__has_the_signature_in_the_table(key):
    expected = upstream.OVERRIDES[key].signature
    actual = str(inspect.signature(rq_method(key)))
    assert actual == expected, (
        f"{INSTALLED} changed {key}: it is now {key}{actual}, "
        f"{TABLE} says {key}{expected}: re-read our override of it"
    )


@pytest.mark.parametrize("key", sorted(upstream.CALLED))
def test_called_rq_method__has_the_signature_in_the_table(key):
    expected = upstream.CALLED[key]
    actual = str(inspect.signature(rq_method(key)))
    assert actual == expected, (
        f"{INSTALLED} changed {key}: it is now {key}{actual}, "
        f"{TABLE} says {key}{expected}: re-read our calls of it"
    )


def made(class_name):
    """Return an instance of the rq class `class_name`; none talks to Redis."""
    client = redis.Redis()  # connects on its first command, never sent here
    return {
        "BaseWorker": lambda: rq.Worker([], connection=client, prepare_for_work=False),
        "RQScheduler": lambda: RQScheduler([], connection=client),
        "BaseDeathPenalty": lambda: UnixSignalDeathPenalty(1, JobTimeoutException),
    }[class_name]()


@pytest.mark.parametrize("class_name", sorted(upstream.PRIVATE_ATTRIBUTES))
def test_private_rq_attributes__are_set_by_the_constructor(class_name):
    instance = made(class_name)
    assert isinstance(instance, RQ_CLASSES[class_name])
    missing = [
        name
        for name in upstream.PRIVATE_ATTRIBUTES[class_name]
        if name not in vars(instance)
    ]
    assert missing == [], f"{INSTALLED} {class_name} no longer sets {missing}"
