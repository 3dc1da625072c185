"""Moodle core functions offered by the service, as core's lib/db/services.php declares them."""

COMPONENT = "moodle"
FUNCTIONS = {
    "core_webservice_get_site_info": {
        "classname": "core_webservice_external",
        "methodname": "get_site_info",
        "classpath": "webservice/externallib.php",
        "description": "Return some site info / user info / list web service functions",
        "type": "read",
        "module": "webservice.core.get_site_info",
    },
}
