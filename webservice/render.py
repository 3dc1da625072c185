"""JSON as PHP's json_encode writes it and Moodle's REST XML (protocol.md sections 10 and 11)."""

from __future__ import annotations

import json
import re

from webservice.errors import MoodleException

XML_HEAD = '<?xml version="1.0" encoding="UTF-8" ?>\n'
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ESCAPED_DEL = re.compile(r"(?<!\\)((?:\\\\)*)\\u007f")  # an unescaped \u007f: PHP writes DEL as is


def to_json(value) -> bytes:
    """json_encode without flags: `\\/`, `\\uXXXX` for non-ASCII, no spaces, `[]` for an empty
    structure. Integral floats were already turned into integers by cleaning."""
    text = json.dumps(_php_shape(value), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    if "\\u007f" in text:
        text = _ESCAPED_DEL.sub("\\1\x7f", text)
    return text.replace("/", "\\/").encode("ascii")


def _php_shape(value):
    """Empty structures become `[]`; a structure without nested ones is used as it is (no copy)."""
    if isinstance(value, list):
        return [_php_shape(v) if isinstance(v, dict | list) else v for v in value]
    if isinstance(value, dict):
        if not value:
            return []
        if any(isinstance(v, dict | list) for v in value.values()):
            return {k: _php_shape(v) for k, v in value.items()}
    return value


def error_json(exc: MoodleException, debug: bool) -> bytes:
    doc = {"exception": exc.exception, "errorcode": exc.errorcode, "message": exc.message}
    if debug and exc.debuginfo:
        doc["debuginfo"] = exc.debuginfo
    return to_json(doc)


def xml_escape(text: str) -> str:
    """htmlspecialchars: & < > " (existing entities are escaped again); forbidden XML chars removed."""
    text = _XML_FORBIDDEN.sub("", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _xml_value(value, schema: dict | None, out: list[str]) -> None:
    kind = schema["type"] if schema else None
    if kind == "object" or (kind is None and isinstance(value, dict)):
        out.append("<SINGLE>\n")
        keys = schema["properties"].items() if schema else ((k, None) for k in value)
        for key, sub in keys:
            out.append(f'<KEY name="{key}">')
            _xml_value((value or {}).get(key), sub, out)
            out.append("</KEY>\n")
        out.append("</SINGLE>\n")
    elif kind == "array" or (kind is None and isinstance(value, list)):
        out.append("<MULTIPLE>\n")
        for item in value or []:
            _xml_value(item, schema["items"] if schema else None, out)
        out.append("</MULTIPLE>\n")
    elif value is None:
        out.append('<VALUE null="null"/>\n')
    else:
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, int | float):
            text = json.dumps(value)
        else:
            text = xml_escape(str(value))
        out.append(f"<VALUE>{text}</VALUE>\n")


def to_xml(value, schema: dict | None) -> bytes:
    out = [XML_HEAD, "<RESPONSE>\n"]
    _xml_value(value, schema, out)
    out.append("</RESPONSE>\n")
    return "".join(out).encode("utf-8")


def error_xml(exc: MoodleException, debug: bool) -> bytes:
    parts = [XML_HEAD, f'<EXCEPTION class="{exc.exception}">\n', f"<ERRORCODE>{xml_escape(exc.errorcode)}</ERRORCODE>\n",
             f"<MESSAGE>{xml_escape(exc.message)}</MESSAGE>\n"]
    if debug and exc.debuginfo:
        parts.append(f"<DEBUGINFO>{xml_escape(exc.debuginfo)}</DEBUGINFO>\n")
    parts.append("</EXCEPTION>\n")
    return "".join(parts).encode("utf-8")
