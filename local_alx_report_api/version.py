"""Plugin version, as Moodle's version.php."""

COMPONENT = "local_alx_report_api"
RELEASE = "2.0.0"
# The schema version comes from install.json (`version`), recorded as the schema_version row.
