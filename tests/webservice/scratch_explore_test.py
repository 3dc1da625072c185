from local_alx_report_api.classes import installer
from tests.webapp import make_app, progress, post
NOW = 1795700000

def test_explore(refsite):
    e = refsite
    print(e.rows("SELECT companyid, setting_name, setting_value FROM {t:local_alx_api_settings}"))
    print(e.rows("SELECT id, token, userid, externalserviceid, validuntil, contextid FROM {t:external_tokens}"))
    print(e.rows("SELECT * FROM {t:external_services}"))
    print(e.rows("SELECT * FROM {t:external_services_users}"))
    print(e.rows("SELECT * FROM {t:external_services_functions}"))
    print(e.rows("SELECT id, name FROM {t:external_functions} WHERE name IN ('core_webservice_get_site_info','local_alx_report_api_get_course_progress')"))
    print(e.rows("SELECT companyid, count(*), sum(is_deleted) FROM {t:local_alx_api_reporting} GROUP BY companyid"))
    installer.install(e, NOW)
    app = make_app(e, NOW)
    r = progress(app, "5b975a61f627044445ee7e7fc5c40be5", limit=2)
    print(r.status, r.headerlist, r.body)
    r = app.options("/webservice/rest/server.php", expect_errors=True)
    print(r.status, r.headerlist, r.body)
