"""gunicorn target: `gunicorn webservice.wsgi:app` (settings from $ALX_REPORT_API_SETTINGS or ./settings.ini)."""

import os

from local_alx_report_api import settings as plugin_settings
from moodle_core.config import settings_path
from webservice.app import create_app

app = create_app(plugin_settings.load(settings_path(None, os.environ)))
