"""Moodle's web-service layer: the REST server, the external API and its renderers."""
