"""The doorbell: NOTIFY and pushes to RQ tell workers that a row waits."""
