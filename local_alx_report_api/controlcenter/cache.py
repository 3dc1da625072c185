"""Cache (admin-ui.md 3.6): the response cache's totals and companies, and the three purges.

Hit rates come from the request log (monitoring.md 1: hits ÷ lookups), not from the cache table:
an entry's `hit_count` says nothing about the misses that never left an entry behind."""

from __future__ import annotations

import re

from local_alx_report_api.classes import company_settings, metrics, reporting
from local_alx_report_api.controlcenter.web import Ctx, Page
from moodle_core.engines import Engine

DAY = 86400


def entries(n: int, kind: str = "") -> str:
    return f"{n} {kind}cache entr{'y' if n == 1 else 'ies'}"


def totals(engine: Engine, now: int) -> dict:
    """Entries, active (not yet expired, as cache.read decides), hits and stored bytes."""
    row = engine.execute(
        "SELECT COUNT(*), SUM(CASE WHEN expires_at >= ? THEN 1 ELSE 0 END), SUM(hit_count), "
        f"SUM({engine.byte_length('cache_data')}) FROM {{t:local_alx_api_cache}}", (now,)).fetchone()
    count, active = int(row[0] or 0), int(row[1] or 0)
    return {"entries": count, "active": active, "expired": count - active, "hits": int(row[2] or 0),
            "bytes": int(row[3] or 0)}


def by_company(engine: Engine, now: int) -> dict[int, dict]:
    return {int(c): {"entries": int(n), "active": int(a or 0), "hits": int(h or 0)} for c, n, a, h in engine.rows(
        "SELECT companyid, COUNT(*), SUM(CASE WHEN expires_at >= ? THEN 1 ELSE 0 END), SUM(hit_count) "
        "FROM {t:local_alx_api_cache} GROUP BY companyid", (now,))}


def company_rows(ctx: Ctx) -> list[dict]:
    """Every IOMAD company, and any company id that still has entries (a deleted company)."""
    engine, now = ctx.engine, ctx.now
    stored = by_company(engine, now)
    rates = metrics.company_metrics(engine, now - DAY, now + 1)
    names = {c.id: c for c in ctx.cc.moodle.companies()}
    ids = sorted(set(names) | set(stored))
    loaded = company_settings.load_all(engine, ids)
    rows = []
    for cid in ids:
        settings = loaded[cid]
        company = names.get(cid)
        found = rates.get(cid)
        rows.append({"id": cid, "name": company.name if company else None,
                     "shortname": company.shortname if company else None,
                     **stored.get(cid, {"entries": 0, "active": 0, "hits": 0}),
                     "hit_rate": found.cache_hit_rate if found else None,
                     "enabled": bool(settings.get("enable_cache")), "ttl": settings.get("cache_ttl_minutes")})
    return rows


class Cache(Page):
    def get(self, ctx: Ctx) -> None:
        window = ctx.settings.local_alx_report_api.metrics_window_minutes
        ctx.render("cache.html", title="Cache", totals=totals(ctx.engine, ctx.now),
                   day=metrics.request_metrics(ctx.engine, ctx.now, DAY // 60),
                   recent=metrics.request_metrics(ctx.engine, ctx.now, window), window=window,
                   companies=company_rows(ctx))


class PurgeExpired(Page):
    def post(self, ctx: Ctx) -> None:
        n = ctx.engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE expires_at < ?", (ctx.now,)).rowcount
        ctx.redirect("/cache", f"Deleted {entries(n, 'expired ')}.")


class PurgeCompany(Page):
    def post(self, ctx: Ctx) -> None:
        text = ctx.form.get("companyid").strip()
        cid = int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None
        company = ctx.cc.moodle.company(cid) if cid is not None else None
        has_entries = cid is not None and ctx.engine.scalar(
            "SELECT COUNT(*) FROM {t:local_alx_api_cache} WHERE companyid = ?", (cid,))
        if company is None and not has_entries:  # a deleted company's leftovers can still be purged
            return ctx.not_found("There is no company with this id.")
        n = reporting.purge_cache(ctx.engine, cid)
        label = company.shortname if company else f"id {cid}"
        ctx.redirect("/cache", f"Deleted {entries(n)} of company {label}.")


class PurgeAll(Page):
    def get(self, ctx: Ctx) -> None:
        ctx.render("cache_purge_all.html", title="Purge the whole cache", totals=totals(ctx.engine, ctx.now))

    def post(self, ctx: Ctx) -> None:
        n = ctx.engine.execute("DELETE FROM {t:local_alx_api_cache}").rowcount
        ctx.redirect("/cache", f"Deleted {entries(n)}: the whole cache.")


ROUTES = {"/cache": Cache, "/cache/purge-expired": PurgeExpired, "/cache/purge-company": PurgeCompany,
          "/cache/purge-all": PurgeAll}
