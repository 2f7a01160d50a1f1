from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models
from django.db.models.functions import Cast, Upper

from ._without_locking import AddPostgresIndexWithoutLocking


def trigram_index(name):
    """A trigram index of the column `name` as upper-case text: the very
    expression of `models.ARGUMENT_TEXTS`, which the argument search compares
    with, of the rows with arguments (`models.ARGUMENTS_GIVEN`): a job called
    without any writes no entry (`tests/test_postgres_plans.py` checks the
    index answers the search)."""
    return AddPostgresIndexWithoutLocking(
        model_name="job",
        index=GinIndex(
            OpClass(Upper(Cast(name, models.TextField())), name="gin_trgm_ops"),
            name=f"jobs_job_{name}_trgm",
            condition=~models.Q((name, [] if name == "args" else {})),
        ),
    )


class Migration(migrations.Migration):
    """The console's search by argument text: on PostgreSQL a trigram index
    of the arguments and one of the keyword arguments, each as upper-case
    JSON text, built without blocking the workers. SQLite has neither (its
    search reads a bounded number of the newest rows); the model's state
    does not hold them, so both databases share one state."""

    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("jobs", "0015_scheduledrun_job"),
    ]

    operations = [
        TrigramExtension(),  # nothing on SQLite
        migrations.SeparateDatabaseAndState(
            database_operations=[trigram_index("args"), trigram_index("kwargs")]
        ),
    ]
