"""The loop's alarm: a job thread, the listener or a signal handler ends its wait."""

import math
import os
import select
import weakref


class Wakeup:
    """A flag the loop waits on, like `threading.Event`, safe to set from a
    signal handler.

    Rule: `set` takes no lock. An Event's `set` takes the lock its `clear`
    and `wait` hold, and a handler runs in the main thread between any two
    bytecodes: one that interrupts the loop inside `clear` waits for the
    loop, which waits for the handler, forever. Here the flag is a byte in a
    pipe (the self-pipe trick); writing it is one system call.
    """

    def __init__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._poll = select.poll()
        self._poll.register(self._read, select.POLLIN)
        # Closed only when nothing can set it any more: a thread's late `set`
        # on a closed descriptor could write into whatever file reused it.
        weakref.finalize(self, _close_both, self._read, self._write)

    def set(self):
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the flag is set

    def clear(self):
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass  # empty: the flag is clear

    def wait(self, timeout=None):
        """Wait until set, or `timeout` seconds; return whether it is set."""
        milliseconds = None if timeout is None else max(0, math.ceil(timeout * 1000))
        return bool(self._poll.poll(milliseconds))


def _close_both(*fds):
    for fd in fds:
        os.close(fd)
