"""The job system's core: what every worker kind and edge builds on."""
