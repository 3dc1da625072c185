"""Configuration (admin-ui.md 3.10), read only: every setting in effect (as the `settings`
command prints them) with its default, the site time zone and its source, Moodle's web-service
switches and our service, the installed schema version and the plugin version, and the API
documentation of the web-service functions (their arguments, as Moodle documents them)."""

from __future__ import annotations

import os

from local_alx_report_api import version
from local_alx_report_api.classes import installer, webservice_setup
from local_alx_report_api.controlcenter.web import Ctx, Page
from local_alx_report_api.db import services

CHANGED_HOW = ("Global settings are changed in settings.ini or by ALX_<SECTION>_<NAME> environment variables, "
               "and take effect when the service is restarted.")


def setting_rows(settings) -> list[dict]:
    """Every declared setting: the value in effect, its default (both shown as the `settings`
    command shows them, secrets masked) and where the value came from."""
    rows = []
    for section, name, shown, source in settings.describe():
        declared = settings.declarations[(section, name)]
        rows.append({"section": section, "name": name, "value": shown, "default": declared.show(declared.default),
                     "changed": settings.values[(section, name)] != declared.default, "source": source,
                     "help": declared.help})
    return rows


def timezone(ctx: Ctx) -> dict:
    """The zone the service uses (read at start) and where it came from (settings.md 1.2)."""
    override = ctx.settings.site.timezone
    zone, source = ctx.cc.moodle.site_timezone(override)
    if override:
        source = f"settings.ini [site] timezone ({ctx.settings.sources[('site', 'timezone')]})"
    return {"zone": ctx.cc.site.timezone, "source": source,
            "pending": zone if zone != ctx.cc.site.timezone else None}  # Moodle's row changed since start


def documentation(registry) -> list[dict]:
    """Each web-service function with its arguments, as Moodle's API documentation describes
    them (admin/webservice/documentation.php): name, type, required or the default, description."""
    out = []
    for name, function in sorted(registry.functions.items()):
        arguments = [{"name": key, "type": node.get("x-param", node["type"]), "description": node["description"],
                      "required": bool(node.get("x-required")) and "default" not in node,
                      "default": node.get("default")}
                     for key, node in function.parameters.get("properties", {}).items()]
        out.append({"name": name, "description": function.description, "type": function.type,
                    "arguments": arguments})
    return out


class Configuration(Page):
    def get(self, ctx: Ctx) -> None:
        path = ctx.settings.path
        installed, expected = installer.installed_version(ctx.engine), installer.schema_version()
        ctx.render("configuration.html", title="Configuration", settings=setting_rows(ctx.settings),
                   settings_file=path, settings_file_found=bool(path) and os.path.exists(path),
                   changed_how=CHANGED_HOW, timezone=timezone(ctx), checks=webservice_setup.checks(ctx.engine, services.SERVICE_SHORTNAME),
                   schema={"installed": installed, "expected": expected}, component=version.COMPONENT,
                   functions=documentation(ctx.cc.site.registry),
                   plugin_version=services.VERSION, release=version.RELEASE)


ROUTES = {"/configuration": Configuration}
