"""The fast encoders (orjson, compiled XML writers) write the same bytes as the reference
encoding of protocol.md 10 and 11 built on the standard library (issue 15)."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from webservice import render
from webservice.external import multiple, single, value

_ESCAPED_DEL = re.compile(r"(?<!\\)((?:\\\\)*)\\u007f")


def php_shape(value):
    """PHP's empty array for every empty structure."""
    if isinstance(value, list):
        return [php_shape(v) for v in value]
    if isinstance(value, dict):
        return {k: php_shape(v) for k, v in value.items()} if value else []
    return value


def reference_json(data) -> bytes:
    """json_encode without flags, by json.dumps: ASCII with \\uXXXX, `\\/`, DEL as is."""
    text = json.dumps(php_shape(data), ensure_ascii=True, separators=(",", ":"))
    return _ESCAPED_DEL.sub("\\1\x7f", text).replace("/", "\\/").encode("ascii")


def reference_xml(data, schema) -> bytes:
    out = [render.XML_HEAD, "<RESPONSE>\n"]

    def walk(item, node):
        if node["type"] == "object":
            out.append("<SINGLE>\n")
            for key, sub in node["properties"].items():
                out.append(f'<KEY name="{key}">')
                walk((item or {}).get(key), sub)
                out.append("</KEY>\n")
            out.append("</SINGLE>\n")
        elif node["type"] == "array":
            out.append("<MULTIPLE>\n")
            for element in item or []:
                walk(element, node["items"])
            out.append("</MULTIPLE>\n")
        elif item is None:
            out.append('<VALUE null="null"/>\n')
        else:
            text = ("1" if item else "0") if isinstance(item, bool) else (
                json.dumps(item) if isinstance(item, int | float) else render.xml_escape(str(item)))
            out.append(f"<VALUE>{text}</VALUE>\n")
    walk(data, schema)
    out.append("</RESPONSE>\n")
    return "".join(out).encode("utf-8")


SCHEMA = multiple(single({"userid": value("PARAM_INT", required=False), "name": value("PARAM_TEXT", required=False),
                          "pct": value("PARAM_FLOAT", required=False), "ok": value("PARAM_BOOL", required=False),
                          "tags": multiple(value("PARAM_TEXT"), required=False)}))
texts = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(["", "a/b", "\x7f", "é😀", '"<&>', "{}", '\\"{}', "\\xe9 \\\\x41 é\\U0001f600 \\é", "\\😀\\x", "a\\"])
percentages = st.integers(0, 10000).map(lambda n: n / 100)
# below 1e-4 json.dumps writes 1e-05 and orjson 0.00001 (PHP: 1.0e-5): no value of ours is that small
elements = st.fixed_dictionaries({}, optional={
    "userid": st.integers(-2**63, 2**63 - 1), "name": texts, "pct": percentages | st.floats(-1e15, 1e15).filter(lambda f: f == 0 or abs(f) >= 1e-4),
    "ok": st.booleans(), "tags": st.lists(texts, max_size=3), "empty": st.just({}), "nested": st.just([{}, []])})


@settings(max_examples=300, deadline=None)
@given(st.lists(elements, max_size=5))
def test_json_is_the_reference_encoding(page):
    assert render.to_json(page) == reference_json(page)


@settings(max_examples=300, deadline=None)
@given(st.lists(elements.map(lambda e: {k: v for k, v in e.items() if k not in ("empty", "nested")}), max_size=5))
def test_xml_is_the_reference_encoding(page):
    assert render.to_xml(page, SCHEMA) == reference_xml(page, SCHEMA)


def test_strings_orjson_refuses_and_huge_integers_take_the_standard_path():
    data = {"lone": "a\ud800b", "big": 2**70}
    assert render.to_json(data) == b'{"lone":"a\\ud800b","big":1180591620717411303424}'
    schema = single({"big": value("PARAM_INT"), "nan": value("PARAM_FLOAT"), "small": value("PARAM_FLOAT")})
    assert render.to_xml({"big": 2**70, "nan": float("nan"), "small": 1e-7}, schema) == reference_xml(
        {"big": 2**70, "nan": float("nan"), "small": 1e-7}, schema)
