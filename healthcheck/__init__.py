"""Health checks for /health: database, Redis and queue statistics."""
