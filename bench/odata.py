"""The OData feed's 1000-row page next to the REST page and their floors (issue 13): one fixture,
`serve --workers 4`, one keep-alive connection, medians of `repeat` requests after WARM warm-ups;
floors are the pages' statements through the bare driver in the same run."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import quote, urlencode, urlsplit

from bench import fixture, load, site
from bench.requests import WARM
from bench.run import LIMIT, floor, stats
from local_alx_report_api.classes import company_settings, company_state, installer, pulls
from local_alx_report_api.classes.odata import model, paging, query
from local_alx_report_api.classes.progress import Scope
from local_alx_report_api.settings import load as load_settings
from moodle_core.moodle import Moodle

FEED = "/local/alx_report_api/odata/CourseProgress"
SELECT = "userid,courseid,status,percentage"


class Feed(site.FixtureBench):
    def __init__(self, db: str, size: fixture.Size, url: str, repeat: int, say=print):
        super().__init__(db, size, url, repeat, say, latencies={})

    def prepare(self) -> None:
        fixture.ensure(self.url, self.size, say=self.say)
        engine = self.engine()
        installer.install(engine, int(time.time()))  # the log's source column, on a fixture made before it
        self.big = next(c for c in Moodle(engine).companies() if c.shortname == fixture.BIG_SHORTNAME)
        self.token = engine.scalar("SELECT t.token FROM {t:external_tokens} t JOIN {t:company_users} cu ON "
                                   "cu.userid = t.userid AND cu.managertype = 1 WHERE cu.companyid = ?", (self.big.id,))
        engine.db.close()
        self.populate_if_empty()
        engine = self.engine()
        if engine.kind == "postgresql":  # what autovacuum does on a production server (off on this machine)
            engine.db.execute_sql("VACUUM ANALYZE " + ", ".join(engine.table(t) for t in site.PLUGIN_STATE))
        engine.db.close()

    def floors(self, deep_key: tuple[int, int]) -> None:
        """The feed's page statements (first page, a page after a deep key, a filtered page) and the
        REST page's, captured from the code that runs them, through the driver alone."""
        engine, raw, n = self.engine(), site.raw_connect(self.url), self.repeat
        plugin = load_settings(self.ini).local_alx_report_api
        settings = company_settings.load(engine, self.big.id)
        scope = Scope.load(engine, self.big.id, plugin.report_roles, settings.switched_off)
        props = model.properties(settings.fields)
        read = paging.Read(self.big.id, scope.courses)
        out = self.results["floors"]
        for name, given, after in (("odata_first", {}, None), ("odata_deep", {}, list(deep_key)),
                                   ("odata_select", {"$select": SELECT}, None),
                                   ("odata_filter", {"$filter": "status eq 'completed'"}, None),
                                   ("odata_sorted", {"$orderby": "lastupdated desc"}, None)):
            options = query.parse(given, props, engine.kind, None)
            columns = tuple(dict.fromkeys([*(p.column for p in options.select), *(p.column for p, _ in options.order)]))
            with engine.recording() as calls:
                paging.page(engine, read, options, columns, after=after, offset=0, limit=LIMIT + 1)
            out[name], _ = floor(raw, *calls[-1], n)
        req = pulls.PageRequest(self.big.id, "", 0, LIMIT, 0, scope, 0, 24, True, True, int(time.time()), "UTC")
        with engine.recording() as calls:
            pulls.table_rows(engine, req, pulls.Definition("full", 0, company_state.current(engine, self.big.id), False),
                             after=(0, 0))
        out["rest_page"], _ = floor(raw, *calls[-1], n)
        raw.close()
        engine.db.close()

    def latencies(self, port: int) -> tuple[int, int]:
        """Each series' median; returns the deep page's key (for its floor)."""
        conn, engine, out = http.client.HTTPConnection("127.0.0.1", port, timeout=120), self.engine(), self.results["latencies"]

        def get(path: str, **params) -> tuple[float, dict]:
            started = time.perf_counter()
            conn.request("GET", path + ("?" + urlencode(params, quote_via=quote) if params else ""),
                         headers={"Authorization": f"Bearer {self.token}"})
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
            return elapsed, json.loads(data)

        def series(path: str, before=None, **params) -> dict:
            samples = []
            for i in range(WARM + self.repeat):
                if before:
                    before()
                elapsed, _ = get(path, **params)
                if i >= WARM:
                    samples.append(elapsed)
            return stats(samples)

        out["odata_first"] = series(FEED)
        out["odata_select"] = series(FEED, **{"$select": SELECT})
        out["odata_filter"] = series(FEED, **{"$filter": "status eq 'completed'"})
        out["odata_sorted"] = series(FEED, **{"$orderby": "lastupdated desc"})
        # a page deep in the feed: follow nextLinks to about the middle of the big company, then ask it again
        _, document = get(FEED)
        rows = int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = ? AND "
                                 "is_deleted = 0", (self.big.id,)))
        for _ in range(rows // LIMIT // 2):
            link = urlsplit(document["@odata.nextLink"])
            _, document = get(f"{link.path}?{link.query}")
        deep = document["value"][-1]
        link = urlsplit(document["@odata.nextLink"])
        out["odata_deep"] = series(f"{link.path}?{link.query}")
        out["odata_deep"]["after_rows"] = rows // LIMIT // 2 * LIMIT + LIMIT
        conn.close()
        client = load.Client(port)

        def purge():
            engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE companyid = ?", (self.big.id,))

        for name, before in (("rest_miss", purge), ("rest_hit", None)):
            samples = []
            for i in range(WARM + self.repeat):
                if before:
                    before()
                elapsed, _ = client.call(self.token, pulls.FUNCTION, limit=LIMIT, offset=0, mode="full")
                if i >= WARM:
                    samples.append(elapsed)
            out[name] = stats(samples)
        client.close()
        engine.db.close()
        return int(deep["userid"]), int(deep["courseid"])

    def run(self) -> dict:
        self.prepare()
        self.say("serve --workers 4; OData and REST pages")
        server = load.Server(self.env, workers=4)
        try:
            deep = self.latencies(server.port)
        finally:
            server.stop()
        self.floors(deep)
        return self.results


ROWS = [("odata_first", "OData, first page (1000 rows, every property)", "odata_first"),
        ("odata_select", "OData, first page, $select of 4 properties", "odata_select"),
        ("odata_filter", "OData, first page, $filter=status eq 'completed'", "odata_filter"),
        ("odata_sorted", "OData, first page, $orderby=lastupdated desc (sorts the company)", "odata_sorted"),
        ("odata_deep", "OData, a nextLink page in the middle of the company", "odata_deep"),
        ("rest_miss", "REST get_course_progress, offset 0, cache miss", "rest_page"),
        ("rest_hit", "REST get_course_progress, offset 0, cache hit", None)]


def markdown(r: dict) -> str:
    lines = [f"### OData feed, {r['db']} {r['size']} ({r['started']}, code {r['commit']})", "",
             f"Medians of {r['repeat']} requests after {WARM} warm-ups (ms), `serve --workers 4`, one keep-alive "
             "connection; the floor is the page's statement through the bare driver in this run.", "",
             "| measurement | floor | median | p95 | / floor |", "|---|---|---|---|---|"]
    for key, label, floor_key in ROWS:
        got, fl = r["latencies"].get(key), r["floors"].get(floor_key) if floor_key else None
        if got:
            ratio = f"{got['median'] / fl['median']:.1f}×" if fl else ""
            lines.append(f"| {label} | {fl['median'] if fl else ''} | {got['median']} | {got.get('p95', '')} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(db: str, size: fixture.Size, url: str, repeat: int, say) -> tuple[dict, str]:
    from datetime import UTC, datetime

    from bench.run import _commit
    bench = Feed(db, size, url, repeat, say)
    bench.results.update(started=datetime.now(UTC).isoformat(timespec="seconds"), commit=_commit())
    results = bench.run()
    return results, markdown(results)
