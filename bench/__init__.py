"""The benchmark harness of issue 7: `python bench/run.py --help`.

Nothing here is imported by the job system; it is measurement only.
"""
