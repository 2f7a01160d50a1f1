# The maintenance lock is a leader lock, not a lease: a job's lease is its
# fence (status and lease token), this row elects who runs the duties.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0005_per_job_options"),
    ]

    operations = [
        migrations.RenameModel(old_name="Lease", new_name="LeaderLock"),
    ]
