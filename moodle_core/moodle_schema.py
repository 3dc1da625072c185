"""The Moodle core and IOMAD tables the service reads (moodle-schema.md), in XMLDB terms.

Real sites have more columns; these are the ones the service uses, with Moodle's types and
defaults. The demo site is created from exactly these definitions."""

from moodle_core.xmldb import Table, parse_columns

_T = {
    "user": ("""
        auth char(20) NN ='manual'
        confirmed int(1) NN =0
        policyagreed int(1) NN =0
        deleted int(1) NN =0
        suspended int(1) NN =0
        mnethostid int(10) NN =0
        username char(100) NN =''
        password char(255) NN =''
        idnumber char(255) NN =''
        firstname char(100) NN =''
        lastname char(100) NN =''
        email char(100) NN =''
        lang char(30) NN ='en'
        calendartype char(30) NN ='gregorian'
        timezone char(100) NN ='99'
        picture int(10) NN =0
        firstaccess int(10) NN =0
        lastaccess int(10) NN =0
        timecreated int(10) NN =0
        timemodified int(10) NN =0
        """, [("mnethostid_username", True, "mnethostid", "username"), ("deleted", False, "deleted"),
              ("email", False, "email"), ("auth", False, "auth")]),
    "course": ("""
        category int(10) NN =0
        sortorder int(10) NN =0
        fullname char(254) NN =''
        shortname char(255) NN =''
        startdate int(10) NN =0
        visible int(1) NN =1
        timecreated int(10) NN =0
        timemodified int(10) NN =0
        enablecompletion int(1) NN =0
        cacherev int(10) NN =0
        """, [("category", False, "category")]),
    "course_completions": ("""
        userid int(10) NN =0
        course int(10) NN =0
        timeenrolled int(10) NN =0
        timestarted int(10) NN =0
        timecompleted int(10)
        reaggregate int(10) NN =0
        """, [("useridcourse", True, "userid", "course"), ("userid", False, "userid"),
              ("course", False, "course"), ("timecompleted", False, "timecompleted")]),
    "modules": ("""
        name char(20) NN =''
        cron int(10) NN =0
        lastcron int(10) NN =0
        search char(255) NN =''
        visible int(1) NN =1
        """, [("name", False, "name")]),
    "course_modules": ("""
        course int(10) NN =0
        module int(10) NN =0
        instance int(10) NN =0
        section int(10) NN =0
        idnumber char(100)
        added int(10) NN =0
        visible int(1) NN =1
        completion int(1) NN =0
        deletioninprogress int(1) NN =0
        """, [("course", False, "course"), ("module", False, "module"), ("visible", False, "visible"),
              ("instance", False, "instance"), ("idnumber_course", False, "idnumber", "course")]),
    "course_modules_completion": ("""
        coursemoduleid int(10) NN
        userid int(10) NN
        completionstate int(1) NN
        overrideby int(10)
        timemodified int(10) NN
        """, [("userid_coursemoduleid", True, "userid", "coursemoduleid"),
              ("coursemoduleid", False, "coursemoduleid")]),
    "enrol": ("""
        enrol char(20) NN =''
        status int(10) NN =0
        courseid int(10) NN
        sortorder int(10) NN =0
        roleid int(10) NN =0
        timecreated int(10) NN =0
        timemodified int(10) NN =0
        """, [("enrol", False, "enrol"), ("courseid", False, "courseid")]),
    "user_enrolments": ("""
        status int(10) NN =0
        enrolid int(10) NN
        userid int(10) NN
        timestart int(10) NN =0
        timeend int(10) NN =2147483647
        modifierid int(10) NN =0
        timecreated int(10) NN =0
        timemodified int(10) NN =0
        """, [("enrolid_userid", True, "enrolid", "userid"), ("enrolid", False, "enrolid"),
              ("userid", False, "userid"), ("modifierid", False, "modifierid")]),
    "role": ("""
        name char(255) NN =''
        shortname char(100) NN =''
        description text NN
        sortorder int(10) NN =0
        archetype char(30) NN =''
        """, [("shortname", True, "shortname"), ("sortorder", True, "sortorder")]),
    "role_assignments": ("""
        roleid int(10) NN =0
        contextid int(10) NN =0
        userid int(10) NN =0
        timemodified int(10) NN =0
        modifierid int(10) NN =0
        component char(100) NN =''
        itemid int(10) NN =0
        sortorder int(10) NN =0
        """, [("sortorder", False, "sortorder"), ("roleid_contextid", False, "roleid", "contextid"),
              ("userid_contextid_roleid", False, "userid", "contextid", "roleid"),
              ("component_itemid_userid", False, "component", "itemid", "userid")]),
    "role_capabilities": ("""
        contextid int(10) NN =0
        roleid int(10) NN =0
        capability char(255) NN =''
        permission int(10) NN =0
        timemodified int(10) NN =0
        modifierid int(10) NN =0
        """, [("roleid_contextid_capability", True, "roleid", "contextid", "capability")]),
    "context": ("""
        contextlevel int(10) NN =0
        instanceid int(10) NN =0
        path char(255)
        depth int(2) NN =0
        locked int(2) NN =0
        """, [("contextlevel_instanceid", True, "contextlevel", "instanceid")]),
    "config": ("""
        name char(255) NN =''
        value text NN
        """, [("name", True, "name")]),
    "config_plugins": ("""
        plugin char(100) NN ='core'
        name char(100) NN =''
        value text NN
        """, [("plugin_name", True, "plugin", "name")]),
    "user_preferences": ("""
        userid int(10) NN =0
        name char(255) NN =''
        value char(1333) NN =''
        """, [("userid_name", True, "userid", "name")]),
    "user_private_key": ("""
        script char(128) NN
        value char(128) NN
        userid int(10) NN
        instance int(10)
        iprestriction char(255)
        validuntil int(10)
        timecreated int(10)
        """, [("script_value", False, "script", "value"), ("userid", False, "userid")]),
    "external_functions": ("""
        name char(200) NN =''
        classname char(100) NN =''
        methodname char(100) NN =''
        classpath char(255)
        component char(100) NN =''
        capabilities char(255)
        services char(1333)
        """, [("name", True, "name")]),
    "external_services": ("""
        name char(200) NN
        enabled int(1) NN
        requiredcapability char(150)
        restrictedusers int(1) NN
        component char(100)
        timecreated int(10) NN
        timemodified int(10)
        shortname char(255)
        downloadfiles int(1) NN =0
        uploadfiles int(1) NN =0
        """, [("name", True, "name")]),
    "external_services_functions": ("""
        externalserviceid int(10) NN
        functionname char(200) NN =''
        """, [("externalserviceid", False, "externalserviceid")]),
    "external_services_users": ("""
        externalserviceid int(10) NN
        userid int(10) NN
        iprestriction char(255)
        validuntil int(10)
        timecreated int(10)
        """, [("externalserviceid", False, "externalserviceid"), ("userid", False, "userid")]),
    "external_tokens": ("""
        token char(128) NN =''
        privatetoken char(64)
        tokentype int(4) NN
        userid int(10) NN
        externalserviceid int(10) NN
        sid char(128)
        contextid int(10) NN
        creatorid int(10) NN =1
        iprestriction char(255)
        validuntil int(10)
        timecreated int(10) NN
        lastaccess int(10)
        name char(255)
        """, [("token", False, "token"), ("userid", False, "userid")]),
    "company": ("""
        name char(50) NN =''
        shortname char(25) NN =''
        city char(50) NN =''
        country char(2) NN =''
        suspended int(1) NN =0
        parentid int(20) NN =0
        """, [("comp_shortname", False, "shortname"), ("comp_name", False, "name"), ("comp_par", False, "parentid")]),
    "company_users": ("""
        companyid int(10) NN
        userid int(10) NN
        managertype int(1) NN =0
        departmentid int(10) NN
        suspended int(1) NN =0
        educator int(1) NN =0
        lastused int(20)
        """, [("departmentusers", True, "companyid", "userid", "departmentid"), ("userid", False, "userid")]),
    "company_course": ("""
        companyid int(11) NN
        courseid int(11) NN
        departmentid int(10) NN
        """, [("companycourse", False, "companyid", "courseid"), ("departmentcourse", False, "departmentid", "courseid")]),
    "department": ("""
        name char(255) NN =''
        shortname char(255) NN =''
        company int(10) NN
        parent int(10) NN =0
        """, [("company", False, "company")]),
}

# IOMAD 5.x names of the IOMAD tables (moodle-schema.md section 4.2)
IOMAD5_NAMES = {"company": "local_iomad_companies", "company_users": "local_iomad_company_users",
                "company_course": "local_iomad_company_courses", "department": "local_iomad_departments"}


def moodle_tables() -> list[Table]:
    """Every core and IOMAD (4.x names) table, as XMLDB tables."""
    return [Table(name, parse_columns(cols), [{"name": n, "unique": u, "fields": list(f)} for n, u, *f in idx])
            for name, (cols, idx) in _T.items()]
