"""Operator UI: `occurred_at` (start, or first heard of) and the indexes behind the call list.

PostgreSQL also gets what its search needs (`calls.selectors.search_condition`):
- `search_document`, a generated tsvector column (contact name + transcript, 'simple' config: no
  stemming, no stop words, fine for any language) with a GIN index. It is deliberately not a model
  field: it exists only on PostgreSQL, Django never reads or writes it, and the database keeps it
  current. Its statistics let the planner pick the GIN index for rare words and the time index for
  common ones (a LIKE on the transcript gets neither: it rechecked every transcript, seconds on 100k).
- pg_trgm GIN indexes on the numbers, for digits typed in the middle of a number. pg_trgm is a trusted
  extension (PostgreSQL 13+): the database owner may create it. If it cannot, those two indexes are
  skipped with a warning and digit search scans instead.
SQLite gets none of this: its search is a LIKE scan.
"""

import logging

import django.db.models.fields.json
import django.db.models.functions.comparison
from django.db import DatabaseError, migrations, models, transaction

log = logging.getLogger(__name__)

SEARCH_DOCUMENT = (
    "strip(to_tsvector('simple'::regconfig, "
    "COALESCE(\"dynamic_variables\" ->> 'customer_name', '') || ' ' || COALESCE(\"transcript\", '')))"
)
TRIGRAM_INDEXES = {"call_from_number_trgm": "from_number", "call_to_number_trgm": "to_number"}


def create_search_support(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f'ALTER TABLE "calls_call" ADD COLUMN "search_document" tsvector '
        f"GENERATED ALWAYS AS ({SEARCH_DOCUMENT}) STORED"
    )
    schema_editor.execute('CREATE INDEX "call_search_document" ON "calls_call" USING gin ("search_document")')
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as exc:
        log.warning("pg_trgm unavailable (%s): digit search in numbers will scan", exc)
        return
    for name, column in TRIGRAM_INDEXES.items():
        schema_editor.execute(f'CREATE INDEX "{name}" ON "calls_call" USING gin ("{column}" gin_trgm_ops)')


def drop_search_support(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in TRIGRAM_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')
    schema_editor.execute('ALTER TABLE "calls_call" DROP COLUMN IF EXISTS "search_document"')


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0006_tool_invocation_details'),
        ('integrations', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='call',
            name='occurred_at',
            field=models.GeneratedField(db_persist=True, expression=django.db.models.functions.comparison.Coalesce(models.F('started_at'), models.F('created_at')), output_field=models.DateTimeField()),
        ),
        migrations.AddIndex(
            model_name='call',
            index=models.Index(fields=['-occurred_at', '-id'], name='call_occurred_desc'),
        ),
        migrations.AddIndex(
            model_name='call',
            index=models.Index(fields=['agent', '-occurred_at', '-id'], name='call_agent_occurred'),
        ),
        migrations.AddIndex(
            model_name='call',
            index=models.Index(fields=['ghl_sync_status', '-occurred_at', '-id'], name='call_sync_occurred'),
        ),
        migrations.AddIndex(
            model_name='call',
            index=models.Index(fields=['status', '-occurred_at', '-id'], name='call_status_occurred'),
        ),
        migrations.AddIndex(
            model_name='call',
            index=models.Index(django.db.models.fields.json.KeyTextTransform('routing_rule', 'metadata'), models.OrderBy(models.F('occurred_at'), descending=True), models.OrderBy(models.F('id'), descending=True), name='call_routing_rule'),
        ),
        migrations.RunPython(create_search_support, drop_search_support),
    ]
