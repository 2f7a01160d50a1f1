from django.db import migrations


def set_vacuum_truncate(value):
    def operation(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        table = schema_editor.quote_name("jobs_job")
        schema_editor.execute(f"ALTER TABLE {table} SET (vacuum_truncate = {value})")

    return operation


class Migration(migrations.Migration):
    """VACUUM (and autovacuum) of the job table never truncates its empty
    tail: truncating takes an ACCESS EXCLUSIVE lock that stops every claim
    while VACUUM checks the tail pages (and its replay cancels queries on a
    hot standby). The freed pages are reused by the next jobs instead."""

    dependencies = [
        ("jobs", "0012_limit"),
    ]

    operations = [
        migrations.RunPython(
            set_vacuum_truncate("false"), set_vacuum_truncate("true"), elidable=False
        ),
    ]
