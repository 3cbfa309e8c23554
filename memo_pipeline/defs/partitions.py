"""Partitions: one key per UTC day that has data (``YYYY-MM-DD``).

The inputs span 2000 to 2024 with long empty stretches; a calendar of daily partitions over that
range would make the UI page through thousands of empty days. Keys are therefore added, as
dynamic partitions, when data for a day lands; every key is still one UTC day.
"""

from dagster import DynamicPartitionsDefinition

ingest_days = DynamicPartitionsDefinition(name="ingest_days")
