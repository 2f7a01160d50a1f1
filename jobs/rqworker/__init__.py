"""The Redis path: the RQ job function and our RQ worker classes."""
