"""local_alx_report_api: the plugin (course progress for BI tools)."""
