"""Tables described in Moodle's XMLDB terms (as in install.json): parsing, DDL and peewee models.

One description gives both the DDL of every engine (through `moodle_core.engines`) and the
peewee model classes, so the two cannot drift apart."""

from __future__ import annotations

import re
from dataclasses import dataclass

import peewee


@dataclass
class Table:
    name: str
    fields: list[dict]
    indexes: list[dict]
    comment: str = ""

    def field(self, name: str) -> dict:
        return next(f for f in self.fields if f["name"] == name)


def tables_from_json(document: dict) -> list[Table]:
    """Tables of an install.json document; unique keys become unique indexes."""
    tables = []
    for t in document["tables"]:
        indexes = list(t.get("indexes", []))
        for key in t.get("keys", []):
            if key["type"] == "unique":
                indexes.append({"name": key["name"], "unique": True, "fields": key["fields"]})
        tables.append(Table(t["name"], t["fields"], indexes, t.get("comment", "")))
    return tables


_COLUMN = re.compile(r"^(\w+)\s+(int|char|text|number)(?:\((\d+)(?:,(\d+))?\))?((?:\s+NN)?)(?:\s+=(.*))?$")


def parse_columns(spec: str) -> list[dict]:
    """Compact notation, one column per line: `name int(10) NN =0`, `email char(100) NN`,
    `timecompleted int(10)` (nullable), `fullname char(254) NN =''`."""
    fields = [{"name": "id", "type": "int", "length": 10, "notnull": True, "default": None, "sequence": True}]
    for line in filter(None, (ln.strip() for ln in spec.strip().splitlines())):
        m = _COLUMN.match(line)
        if not m:
            raise ValueError(f"bad column spec: {line}")
        name, kind, length, decimals, nn, default = m.groups()
        field = {"name": name, "type": kind, "notnull": bool(nn.strip()), "default": None}
        if length:
            field["length"] = int(length)
        if decimals:
            field["decimals"] = int(decimals)
        if default is not None:
            default = default.strip()
            field["default"] = default[1:-1] if default.startswith("'") else int(default)
        fields.append(field)
    return fields


def peewee_field(field: dict) -> peewee.Field:
    null = not field.get("notnull")
    kw = {"null": null, "column_name": field["name"]}
    if field.get("default") is not None:
        kw["default"] = field["default"]
    if field.get("sequence"):
        return peewee.BigAutoField(column_name=field["name"])
    kind, length = field["type"], field.get("length") or 0
    if kind == "int":
        return peewee.BigIntegerField(**kw) if length >= 10 else peewee.IntegerField(**kw)
    if kind == "char":
        return peewee.CharField(max_length=length, **kw)
    if kind == "number":
        return peewee.DecimalField(max_digits=length, decimal_places=field.get("decimals", 0),
                                   auto_round=True, **kw)
    return peewee.TextField(**kw)


def make_models(tables: list[Table], db: peewee.Database, prefix: str) -> dict[str, type[peewee.Model]]:
    """peewee model classes bound to `db`, named after the tables, with the prefix applied."""
    models = {}
    for table in tables:
        attrs = {f["name"]: peewee_field(f) for f in table.fields}
        attrs["Meta"] = type("Meta", (), {"database": db, "table_name": prefix + table.name,
                                          "legacy_table_names": False})
        models[table.name] = type(table.name, (peewee.Model,), attrs)
    return models


def create_statements(engine, table: Table) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for one table on one engine."""
    return [engine.create_table_sql({"name": table.name, "fields": table.fields})] + [
        engine.create_index_sql(table.name, index) for index in table.indexes]


def create_tables(engine, tables: list[Table]) -> list[str]:
    """Create whichever tables are missing; returns the names created."""
    existing = engine.tables()
    created = []
    for table in tables:
        if engine.prefix + table.name in existing:
            continue
        with engine.db.atomic():
            for statement in create_statements(engine, table):
                engine.db.execute_sql(statement)
        created.append(table.name)
    return created
