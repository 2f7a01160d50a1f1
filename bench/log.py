"""The harness's progress lines: on stderr, so stdout holds only the table."""

import sys
import time


def log(message):
    """Print one progress line, stamped with the time of day, to stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
