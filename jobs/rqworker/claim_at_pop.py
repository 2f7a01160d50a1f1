"""Our RQ workers claim an RQ job's first row as soon as they pop it.

After the pop, RQ fetches the RQ job's hash, renews the worker's key and
marks the job started before it runs it: round trips that an idle worker's
next job waited for before its claim began. Our RQ job ids name their first
row (`rq_push.rq_job_id`), so the worker claims that row at the pop, and the
rest of a batch later: the forking worker once RQ has fetched it
(`JobsWorker.claim`), the simple one as it runs the RQ job (`job.execute`).

A row claimed at a pop and not handed to the worker with its RQ job (the
RQ job's hash was gone, it carries other rows, RQ failed before handing
it over, the worker stopped) is given back at once, its attempt not
counted (`transitions.release`, which pushes it again).
"""

from rq.job import get_current_job
from rq.worker import WorkerStatus

from ..core import transitions
from ..notify.rq_push import first_row_of
from .claiming import claim_all


class ClaimAtPop:
    """The rows claimed at the last pop, until the worker takes them."""

    def __init__(self):
        self.worker = None  # the worker that claims at its pops
        self.rq_id = None
        self.jobs = []

    def give_back(self):
        """Give back what the last pop claimed, which RQ did not hand over:
        it pops again, its dequeue failed, or the worker stops."""
        if self.rq_id is None:
            return
        jobs, self.rq_id, self.jobs = self.jobs, None, []
        if self.worker is not None:
            self.worker._state = WorkerStatus.IDLE  # it waits again
        transitions.release(jobs)

    def popped(self, rq_id):
        """Claim the first row the RQ job `rq_id` names, if it names one."""
        row = first_row_of(rq_id) if self.worker is not None else None
        if row is None:
            return
        # Busy before the claim, as `JobsWorker.execute_job` marks itself.
        self.worker._state = WorkerStatus.BUSY
        self.rq_id, self.jobs = rq_id, claim_all([row])

    def take(self, rq_id, job_ids):
        """Return the rows claimed at the pop of the RQ job `rq_id`, which
        carries `job_ids` (None if it claimed none for it: give back what
        it claimed for another)."""
        if self.rq_id is None:
            return None
        mine = self.rq_id == rq_id and job_ids is not None
        jobs, self.rq_id, self.jobs = self.jobs, None, []
        if mine and all(str(job.pk) == job_ids[0] for job in jobs):
            return jobs
        transitions.release(jobs)  # the worker stays busy: it runs `rq_id`
        return None

    def take_running(self, job_ids):
        """`take` for the RQ job this process is running (the simple worker
        runs it in its own process), which carries `job_ids`."""
        if self.rq_id is None:
            return None
        running = get_current_job()
        return self.take(running.id if running is not None else None, job_ids)


claims = ClaimAtPop()
