"""The parts of the benchmark, in the order their figures are listed and run.

A new part is one module here with a `Part` subclass, and its entry in
`PARTS`; `bench/run.py --only NAME` then runs it alone.
"""

from .drain import Drain
from .enqueue import Enqueue
from .http import Http
from .pickup import Pickup
from .scale import Scale
from .startup import Startup

PARTS = {part.name: part for part in (Enqueue, Drain, Pickup, Startup, Http, Scale)}
