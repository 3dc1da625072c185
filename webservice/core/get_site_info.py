"""`core_webservice_get_site_info` (protocol.md section 15; keys 17–21 filled as Moodle 4.4's
core_webservice_external::get_site_info fills them, decision 101)."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

from webservice.auth import has_capability, is_siteadmin
from webservice.external import multiple, single, value

ADVANCED = ("usecomments", "usetags", "enablenotes", "messaging", "enableblogs", "enablecompletion", "enablebadges",
            "messagingallusers", "enablecustomreports", "enableglobalsearch")
# lib/moodlelib.php
SYSCONTEXTID = 1
HOMEPAGE_SITE, HOMEPAGE_MY, HOMEPAGE_MYCOURSES = 0, 1, 3
USER_CAN_IGNORE_FILE_SIZE_LIMITS = -1
# PHP's own php.ini defaults, which get_max_upload_file_size() reads (decision 101): upload_max_filesize
# "2M" and post_max_size "8M" (the endpoint reads bodies up to the same 8 MiB, as PHP would)
UPLOAD_MAX_FILESIZE = 2 * 1024 * 1024
POST_MAX_SIZE = 8 * 1024 * 1024
KEY_SCRIPT = "core_files"  # get_user_key('core_files', $USER->id): the key for tokenpluginfile.php
_KEY_CHARS = string.ascii_uppercase + string.ascii_lowercase + string.digits  # random_string()
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"  # a number as PHP reads one in a string
_LEADING = re.compile(rf"[ \t\n\r\v\f]*({_NUMBER})")
_NUMERIC = re.compile(rf"[ \t\n\r\v\f]*{_NUMBER}[ \t\n\r\v\f]*")
_INT_MIN, _INT_MAX = -(2 ** 63), 2 ** 63 - 1


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


def _php_int(text) -> int:
    """PHP's (int) cast of a stored string: its leading number (truncated, within 64 bits), else 0."""
    m = _LEADING.match("" if text is None else str(text))
    if not m:
        return 0
    number = m.group(1)
    if any(c in number for c in ".eE"):
        number = float(number)
        if number != number or number in (float("inf"), float("-inf")):
            return 0
    return max(_INT_MIN, min(_INT_MAX, int(number)))


def _php_empty(text) -> bool:
    """PHP's empty() of a config value: absent, "" or "0"."""
    return text is None or text in ("", "0")


def _php_equals(text: str, number: int) -> bool:
    """PHP 8's `$string == int`: as numbers when the string is numeric, else as strings."""
    return float(text) == number if _NUMERIC.fullmatch(text) else text == str(number)


def home_page(engine, config, userid: int) -> int:
    """get_home_page() of Moodle 4.4 for the token's user: config `defaulthomepage`, and for
    "the user chooses" (2) the user preference `user_home_page_preference`."""
    default = config.get("defaulthomepage")
    if _php_empty(default) or str(userid) == str(config.get("siteguest") or ""):
        return HOMEPAGE_SITE
    dashboard = config.get("enabledashboard")
    default_page = HOMEPAGE_MY if dashboard is None or not _php_empty(dashboard) else HOMEPAGE_MYCOURSES
    if _php_equals(default, HOMEPAGE_MY):
        return HOMEPAGE_MY if not _php_empty(dashboard) else default_page
    if _php_equals(default, HOMEPAGE_MYCOURSES):
        return HOMEPAGE_MYCOURSES
    chosen = engine.scalar("SELECT value FROM {t:user_preferences} WHERE userid = ? AND name = "
                           "'user_home_page_preference'", (userid,))
    page = default_page if chosen is None else _php_int(chosen)
    if _php_empty(dashboard) and page == HOMEPAGE_MY:  # the dashboard is off: the default instead
        page = default_page
    return page


def max_upload_file_size(can_ignore_limits: bool, sitebytes: int) -> int:
    """get_user_max_upload_file_size($context, $CFG->maxbytes): -1 for a user who may ignore file
    size limits, else the smallest of PHP's upload_max_filesize and post_max_size and the site's
    limit (when set)."""
    if can_ignore_limits:
        return USER_CAN_IGNORE_FILE_SIZE_LIMITS
    size = UPLOAD_MAX_FILESIZE
    if 0 < POST_MAX_SIZE < size:
        size = POST_MAX_SIZE
    if 0 < sitebytes < size:
        size = sitebytes
    return size


_KEY_OF = ("SELECT value FROM {t:user_private_key} WHERE script = ? AND userid = ? AND instance IS NULL "
           "AND iprestriction IS NULL AND validuntil IS NULL ORDER BY id")


def user_key(engine, userid: int, now: int) -> str:
    """get_user_key('core_files', userid): the value of the user's key without instance, IP
    restriction or expiry; when there is none, one is made and stored as create_user_key() does
    (decision 101), under a lock so that simultaneous first calls store one key."""
    key = engine.scalar(_KEY_OF, (KEY_SCRIPT, userid))
    if key is not None:
        return key
    with engine.locked_transaction(f"user_private_key_{userid}"):
        key = engine.scalar(_KEY_OF, (KEY_SCRIPT, userid))
        if key is None:
            key = _new_key(engine, userid, now)
            engine.insert("user_private_key", {"script": KEY_SCRIPT, "value": key, "userid": userid, "instance": None,
                                               "iprestriction": None, "validuntil": None, "timecreated": now})
    return key


def _new_key(engine, userid: int, now: int) -> str:
    """md5($userid . '_' . time() . random_string(40)), again while the value is taken."""
    while True:
        salt = "".join(secrets.choice(_KEY_CHARS) for _ in range(40))
        key = hashlib.md5(f"{userid}_{now}{salt}".encode(), usedforsecurity=False).hexdigest()
        if engine.scalar("SELECT 1 FROM {t:user_private_key} WHERE value = ?", (key,)) is None:
            return key


def _service_functions(engine, config, serviceid: int, versions: dict[str, str]) -> list[dict]:
    functions = []
    for name, component in engine.rows(
            "SELECT f.name, f.component FROM {t:external_functions} f WHERE EXISTS (SELECT 1 FROM "
            "{t:external_services_functions} sf WHERE sf.externalserviceid = ? AND sf.functionname = f.name) "
            "ORDER BY f.id", (serviceid,)):
        if component in ("moodle", "core"):
            version = config.get("version") or ""
        elif component in versions:
            version = versions[component]
        else:
            version = engine.scalar("SELECT value FROM {t:config_plugins} WHERE plugin = ? AND name = 'version'",
                                    (component,)) or ""
        functions.append({"name": name, "version": version})
    return functions


def execute(call, serviceshortnames=()) -> dict:
    engine, config, user = call.engine, call.config, call.caller.user
    # what rarely changes is reused by the worker for config_cache_seconds (issue 15): site info is
    # the fixed cost of every client's first call
    site_course = config.remember(("site course",), lambda: engine.execute(
        "SELECT id, fullname FROM {t:course} WHERE category = 0 ORDER BY id LIMIT 1").fetchone())
    siteurl = str(call.settings.site.wwwroot).rstrip("/")
    theme = config.get("theme") or "boost"
    usercontext = config.remember(("user context", user["id"]), lambda: engine.scalar(
        "SELECT id FROM {t:context} WHERE contextlevel = 30 AND instanceid = ?", (user["id"],)))
    if int(user["picture"] or 0) == 0:
        picture = f"{siteurl}/theme/image.php/{theme}/core/{config.get('themerev') or '1'}/u/f1"
    else:
        picture = f"{siteurl}/pluginfile.php/{usercontext}/user/icon/{theme}/f1?rev={user['picture']}"
    functions = config.remember(("service functions", call.caller.serviceid),
                                lambda: _service_functions(engine, config, call.caller.serviceid, call.site_versions))
    service = config.remember(("service files", call.caller.serviceid), lambda: engine.execute(
        "SELECT downloadfiles, uploadfiles FROM {t:external_services} WHERE id = ?",
        (call.caller.serviceid,)).fetchone()) or (0, 0)
    features = [{"name": name, "value": _int(config.get(name))} for name in ADVANCED if config.get(name) is not None]
    features.append({"name": "mnet_dispatcher_mode", "value": 1 if config.get("mnet_dispatcher_mode") == "strict" else 0})
    competencies = config.remember(("core_competency",), lambda: engine.scalar(
        "SELECT value FROM {t:config_plugins} WHERE plugin = 'core_competency' AND name = 'enabled'"))
    features.append({"name": "enablecompetencies", "value": _int(competencies)})
    calendar = config.get("calendartype") or "gregorian"

    # capabilities in the user's context (context_user::instance); one the user does not have yet
    # would sit right under the system context with no assignments or overrides of its own
    def can(capability: str) -> bool:
        return has_capability(engine, config, user["id"], usercontext or SYSCONTEXTID, capability)
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
        "usercanmanageownfiles": can("moodle/user:manageownfiles"),
        "userquota": 0 if can("moodle/user:ignoreuserquota") else _php_int(config.get("userquota")),
        "usermaxuploadfilesize": max_upload_file_size(can("moodle/course:ignorefilesizelimits"),
                                                      _php_int(config.get("maxbytes"))),
        "userhomepage": home_page(engine, config, user["id"]),
        "userprivateaccesskey": config.remember(("user key", user["id"]), lambda: user_key(engine, user["id"], call.now)),
        "siteid": site_course[0] if site_course else 1,
        "sitecalendartype": calendar,
        "usercalendartype": user["calendartype"] or calendar,
        "userissiteadmin": is_siteadmin(config, user["id"]),
        "theme": theme,
        "limitconcurrentlogins": _int(config.get("limitconcurrentlogins")),
        "policyagreed": user["policyagreed"],
    }
