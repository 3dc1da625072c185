"""`core_webservice_get_site_info` (protocol.md section 15)."""

from __future__ import annotations

import re

from webservice.auth import is_siteadmin
from webservice.external import multiple, single, value

ADVANCED = ("usecomments", "usetags", "enablenotes", "messaging", "enableblogs", "enablecompletion", "enablebadges",
            "messagingallusers", "enablecustomreports", "enableglobalsearch")


def execute_parameters() -> dict:
    return single({"serviceshortnames": multiple(value("PARAM_ALPHANUMEXT", "service shortname"),
                                                 "DEPRECATED PARAMETER", required=False, default=[])})


def execute_returns() -> dict:
    opt = {"required": False}
    return single({
        "sitename": value("PARAM_RAW", "site name"),
        "username": value("PARAM_RAW", "username"),
        "firstname": value("PARAM_TEXT", "first name"),
        "lastname": value("PARAM_TEXT", "last name"),
        "fullname": value("PARAM_TEXT", "user full name"),
        "lang": value("PARAM_LANG", "Current language."),
        "userid": value("PARAM_INT", "user id"),
        "siteurl": value("PARAM_RAW", "site url"),
        "userpictureurl": value("PARAM_URL", "the user profile picture."),
        "functions": multiple(single({"name": value("PARAM_RAW", "function name"),
                                      "version": value("PARAM_TEXT", "The version number of the component")}),
                              "functions that are available"),
        "downloadfiles": value("PARAM_INT", "1 if users are allowed to download files, 0 if not", **opt),
        "uploadfiles": value("PARAM_INT", "1 if users are allowed to upload files, 0 if not", **opt),
        "release": value("PARAM_TEXT", "Moodle release number", **opt),
        "version": value("PARAM_TEXT", "Moodle version number", **opt),
        "mobilecssurl": value("PARAM_URL", "Mobile custom CSS theme", **opt),
        "advancedfeatures": multiple(single({"name": value("PARAM_ALPHANUMEXT", "feature name"),
                                             "value": value("PARAM_INT", "feature value. Usually 1 means enabled.")}),
                                     "Advanced features availability", required=False),
        "usercanmanageownfiles": value("PARAM_BOOL", "true if the user can manage his own files", **opt),
        "userquota": value("PARAM_INT", "user quota (bytes for the private files area)", **opt),
        "usermaxuploadfilesize": value("PARAM_INT", "user max upload file size (bytes)", **opt),
        "userhomepage": value("PARAM_INT", "the default home page for the user", **opt),
        "userprivateaccesskey": value("PARAM_ALPHANUM", "Private user access key for fetching files.", **opt),
        "siteid": value("PARAM_INT", "Site course ID", **opt),
        "sitecalendartype": value("PARAM_PLUGIN", "Calendar type set in the site.", **opt),
        "usercalendartype": value("PARAM_PLUGIN", "Calendar typed used by the user.", **opt),
        "userissiteadmin": value("PARAM_BOOL", "Whether the user is a site admin or not.", **opt),
        "theme": value("PARAM_THEME", "Current theme for the user.", **opt),
        "limitconcurrentlogins": value("PARAM_INT", "Number of concurrent sessions allowed", **opt),
        "usersessionscount": value("PARAM_INT", "Number of active sessions for current user.", **opt),
        "policyagreed": value("PARAM_INT", "Whether user accepted all the policies.", **opt),
    })


def _sitename(text: str) -> str:
    """format_string for the site name: tags removed, < > and bare & as entities."""
    text = re.sub(r"<[^>]*>", "", text)
    text = re.sub(r"&(?!(?:[a-zA-Z][a-zA-Z0-9]*|#[0-9]+|#x[0-9a-fA-F]+);)", "&amp;", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _int(text) -> int:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return 0


def execute(call, serviceshortnames=()) -> dict:
    engine, config, user = call.engine, call.config, call.caller.user
    site_course = engine.execute("SELECT id, fullname FROM {t:course} WHERE category = 0 ORDER BY id LIMIT 1").fetchone()
    siteurl = str(call.settings.site.wwwroot).rstrip("/")
    theme = config.get("theme") or "boost"
    if int(user["picture"] or 0) == 0:
        picture = f"{siteurl}/theme/image.php/{theme}/core/{config.get('themerev') or '1'}/u/f1"
    else:
        usercontext = engine.scalar("SELECT id FROM {t:context} WHERE contextlevel = 30 AND instanceid = ?",
                                    (user["id"],))
        picture = f"{siteurl}/pluginfile.php/{usercontext}/user/icon/{theme}/f1?rev={user['picture']}"
    versions = call.site_versions
    functions = []
    for name, component in engine.rows(
            "SELECT f.name, f.component FROM {t:external_functions} f WHERE EXISTS (SELECT 1 FROM "
            "{t:external_services_functions} sf WHERE sf.externalserviceid = ? AND sf.functionname = f.name) "
            "ORDER BY f.id", (call.caller.serviceid,)):
        if component in ("moodle", "core"):
            version = config.get("version") or ""
        elif component in versions:
            version = versions[component]
        else:
            version = engine.scalar("SELECT value FROM {t:config_plugins} WHERE plugin = ? AND name = 'version'",
                                    (component,)) or ""
        functions.append({"name": name, "version": version})
    service = engine.execute("SELECT downloadfiles, uploadfiles FROM {t:external_services} WHERE id = ?",
                             (call.caller.serviceid,)).fetchone() or (0, 0)
    features = [{"name": name, "value": _int(config.get(name))} for name in ADVANCED if config.get(name) is not None]
    features.append({"name": "mnet_dispatcher_mode", "value": 1 if config.get("mnet_dispatcher_mode") == "strict" else 0})
    competencies = engine.scalar("SELECT value FROM {t:config_plugins} WHERE plugin = 'core_competency' "
                                 "AND name = 'enabled'")
    features.append({"name": "enablecompetencies", "value": _int(competencies)})
    calendar = config.get("calendartype") or "gregorian"
    return {
        "sitename": _sitename(site_course[1] if site_course else ""),
        "username": user["username"],
        "firstname": user["firstname"],
        "lastname": user["lastname"],
        "fullname": f"{user['firstname']} {user['lastname']}",
        "lang": user["lang"] or config.get("lang") or "en",
        "userid": user["id"],
        "siteurl": siteurl,
        "userpictureurl": picture,
        "functions": functions,
        "downloadfiles": service[0],
        "uploadfiles": service[1],
        "release": config.get("release"),
        "version": config.get("version"),
        "mobilecssurl": config.get("mobilecssurl") or "",
        "advancedfeatures": features,
        "siteid": site_course[0] if site_course else 1,
        "sitecalendartype": calendar,
        "usercalendartype": user["calendartype"] or calendar,
        "userissiteadmin": is_siteadmin(config, user["id"]),
        "theme": theme,
        "limitconcurrentlogins": _int(config.get("limitconcurrentlogins")),
        "policyagreed": user["policyagreed"],
    }
