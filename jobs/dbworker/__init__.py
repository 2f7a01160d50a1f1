"""The database worker (`manage.py jobworker`): runs jobs from the table."""
