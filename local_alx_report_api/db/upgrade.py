"""Numbered upgrade steps, as Moodle's db/upgrade.php.

Each step is (version, description, function(engine, schema, now)); `install` runs the steps
newer than the recorded schema_version in ascending order, each in a transaction where the
engine allows, and records each version as it completes. The base version 2026112500 is what
install.json describes; install creates or adopts it directly."""

STEPS: list = []
