"""The steady-load soak (`bench/soak.py`): a private PostgreSQL cluster, one
worker fed at a fixed rate, and samples of the queue's health every window.

- `cluster`: the private PostgreSQL cluster, stock settings;
- `load`: the system on it, its capacity, the worker and the producer;
- `sample`: what one window looks like, read from rows and `pg_stat_*`;
- `hold`: the long transaction that pins the vacuum horizon;
- `verdict`: the issue's targets, checked over the samples;
- `table`: the printed rows and verdict lines.
"""
