"""What `install` prepares on Moodle's side (protocol.md section 9): the function row, the
`alx_report_api_custom` service with its function links, and the web-service switches."""

from __future__ import annotations

from local_alx_report_api.classes.installer import InstallError, Report
from local_alx_report_api.db import services
from moodle_core.engines import Engine

FUNCTION = "local_alx_report_api_get_course_progress"
SITE_INFO = "core_webservice_get_site_info"
DISABLED = ("Web services are disabled in Moodle (config enablewebservices): the endpoint answers HTTP 403. "
            "Enable them in Moodle or run alx-report-api install --enable-webservices.")
NO_REST = ("The REST protocol is not enabled in Moodle (config webserviceprotocols): the endpoint answers HTTP 403. "
           "Enable it in Moodle or run alx-report-api install --enable-webservices.")


def _service(engine: Engine, shortname: str):
    return engine.execute("SELECT id, component FROM {t:external_services} WHERE shortname = ? ORDER BY id LIMIT 1",
                          (shortname,)).fetchone()


def check(engine: Engine) -> None:
    """Stop before changing anything if another service holds our service's unique name."""
    if _service(engine, services.SERVICE_SHORTNAME) is None:
        other = engine.execute("SELECT id, shortname FROM {t:external_services} WHERE name = ?",
                               (services.SERVICE_NAME,)).fetchone()
        if other is not None:
            raise InstallError(f"Another service (id {other[0]}, shortname {other[1] or '(none)'}) is named "
                               f"'{services.SERVICE_NAME}': rename it in Moodle, then run install again")


def prepare(engine: Engine, now: int, enable_webservices: bool, report: Report) -> None:
    check(engine)
    spec = services.FUNCTIONS[FUNCTION]
    with engine.db.atomic():
        if engine.scalar("SELECT id FROM {t:external_functions} WHERE name = ?", (FUNCTION,)) is None:
            engine.insert("external_functions", {"name": FUNCTION, "classname": spec["classname"],
                                                 "methodname": spec["methodname"], "classpath": spec["classpath"],
                                                 "component": services.COMPONENT, "capabilities": "",
                                                 "services": None})
            report.say(f"Added function {FUNCTION} to external_functions")
        found = _service(engine, services.SERVICE_SHORTNAME)
        if found is None:
            serviceid = engine.insert("external_services", {
                "name": services.SERVICE_NAME, "enabled": 1, "requiredcapability": None, "restrictedusers": 0,
                "component": None, "timecreated": now, "timemodified": now, "shortname": services.SERVICE_SHORTNAME,
                "downloadfiles": 0, "uploadfiles": 0})
            report.say(f"Created service {services.SERVICE_SHORTNAME} ({services.SERVICE_NAME})")
            found = (serviceid, None)
        targets = [(services.SERVICE_SHORTNAME, *found)]
        legacy = _service(engine, services.LEGACY_SHORTNAME)
        if legacy is not None:
            targets.append((services.LEGACY_SHORTNAME, *legacy))
        for shortname, serviceid, component in targets:
            if component:
                report.say(f"Service {shortname} belongs to component {component}: Moodle deletes it when that "
                           "component is upgraded or uninstalled.")
            for function in (FUNCTION, SITE_INFO):
                if engine.scalar("SELECT id FROM {t:external_services_functions} WHERE externalserviceid = ? "
                                 "AND functionname = ?", (serviceid, function)) is None:
                    engine.insert("external_services_functions", {"externalserviceid": serviceid,
                                                                  "functionname": function})
                    report.say(f"Linked {function} to service {shortname}")
        _switches(engine, enable_webservices, report)


def switches(engine: Engine) -> tuple[bool, bool]:
    """(web services enabled, REST protocol enabled) as Moodle's config has them (protocol.md 1)."""
    enabled = (_config(engine, "enablewebservices") or "").strip()
    return enabled not in ("", "0"), "rest" in _protocols(engine)


def service_state(engine: Engine, shortname: str) -> dict | None:
    """The service's id, enabled flag, component and linked function names; None when absent."""
    row = engine.execute("SELECT id, enabled, component FROM {t:external_services} WHERE shortname = ? "
                         "ORDER BY id LIMIT 1", (shortname,)).fetchone()
    if row is None:
        return None
    linked = {r[0] for r in engine.rows("SELECT functionname FROM {t:external_services_functions} "
                                        "WHERE externalserviceid = ?", (row[0],))}
    return {"id": int(row[0]), "enabled": bool(int(row[1])), "component": row[2], "functions": linked}


def checks(engine: Engine, shortname: str) -> list[dict]:
    """The Moodle side the endpoint needs (protocol.md 1 and 9), one row each: name, status
    (ok, warning, error) and what to do (the Configuration page and `install` show them)."""
    enabled, rest = switches(engine)
    state = service_state(engine, shortname)
    linked = state["functions"] if state else set()
    fix = "Run alx-report-api install."
    found = [("Web services enabled", enabled, DISABLED), ("REST protocol enabled", rest, NO_REST),
             (f"Service {shortname} present", state is not None, f"The service is missing. {fix}"),
             (f"Service {shortname} enabled", bool(state and state["enabled"]),
              "The service is disabled in Moodle (Site administration > Server > Web services > External services).")]
    found += [(f"{function} linked", function in linked, f"The service does not offer {function}. {fix}")
              for function in (FUNCTION, SITE_INFO)]
    rows = [{"name": name, "status": "ok" if ok else "error", "detail": "" if ok else problem}
            for name, ok, problem in found]
    if state and state["component"]:
        rows.append({"name": f"Service {shortname} owned by no component", "status": "warning",
                     "detail": f"It belongs to component {state['component']}: Moodle deletes it when that component "
                               "is upgraded or uninstalled."})
    return rows


def _protocols(engine: Engine) -> list[str]:
    return [p.strip() for p in (_config(engine, "webserviceprotocols") or "").split(",") if p.strip()]


def _config(engine: Engine, name: str) -> str | None:
    return engine.scalar("SELECT value FROM {t:config} WHERE name = ?", (name,))


def _set_config(engine: Engine, name: str, value: str) -> None:
    if _config(engine, name) is None:
        engine.insert("config", {"name": name, "value": value})
    else:
        engine.execute("UPDATE {t:config} SET value = ? WHERE name = ?", (value, name))


def _switches(engine: Engine, enable: bool, report: Report) -> None:
    webservices, rest = switches(engine)
    if not webservices:
        if enable:
            _set_config(engine, "enablewebservices", "1")
            report.say("Enabled web services in Moodle (config enablewebservices = 1).")
        else:
            report.say(DISABLED)
    if not rest:
        if enable:
            _set_config(engine, "webserviceprotocols", ",".join([*_protocols(engine), "rest"]))
            report.say("Enabled the REST protocol in Moodle (added rest to config webserviceprotocols).")
        else:
            report.say(NO_REST)
