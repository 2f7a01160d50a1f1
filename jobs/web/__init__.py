"""The people-facing edges: the admin console, its dashboard and the job API."""
