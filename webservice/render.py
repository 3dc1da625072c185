"""JSON as PHP's json_encode writes it and Moodle's REST XML (protocol.md sections 10 and 11)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from json.encoder import encode_basestring_ascii

import orjson

from webservice.errors import MoodleException
from webservice.external import once_per_description

XML_HEAD = '<?xml version="1.0" encoding="UTF-8" ?>\n'
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_SPECIAL = re.compile("[&<>\"\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NON_ASCII = re.compile("[^\x00-\x7f]+")
_ASTRAL = re.compile(rb"\\U([0-9a-f]{8})")


def _u_escape(match: re.Match) -> str:
    """A run of non-ASCII characters as json.dumps writes it (\\uXXXX, surrogate pairs)."""
    return encode_basestring_ascii(match.group(0))[1:-1]


def _pair(match: re.Match) -> bytes:
    code = int(match.group(1), 16) - 0x10000
    return b"\\u%04x\\u%04x" % (0xd800 + (code >> 10), 0xdc00 + (code & 0x3ff))


def _ascii(data: bytes) -> bytes:
    """JSON text with every non-ASCII character written \\uXXXX. Python's C codec does the work
    (`backslashreplace`: \\xNN, \\uNNNN, \\UNNNNNNNN), then \\xNN becomes \\u00NN and \\U a surrogate
    pair; a scan of every character would take ten times as long on a page of 300 KB. A literal
    backslash before such an escape (`\\\\x…` in the text) would be ambiguous: that rare answer
    takes the character-by-character path."""
    text = data.decode("utf-8", "surrogatepass")
    escaped = text.encode("ascii", "backslashreplace")
    if b"\\\\x" in escaped or b"\\\\U" in escaped:
        return _NON_ASCII.sub(_u_escape, text).encode("ascii")
    escaped = escaped.replace(b"\\x", b"\\u00")
    return _ASTRAL.sub(_pair, escaped) if b"\\U" in escaped else escaped


_EMPTY_OBJECT = re.compile(rb'"(?:[^"\\]|\\.)*"|\{\}')  # a string (skipped), or `{}` outside one


def _empty_array(match: re.Match) -> bytes:
    return b"[]" if match.group(0) == b"{}" else match.group(0)


def to_json(value) -> bytes:
    """json_encode without flags: `\\/`, `\\uXXXX` for non-ASCII (DEL as is), no spaces, `[]` for an
    empty structure (PHP's empty array). orjson writes the rest as PHP does (escapes of `"`, `\\`
    and control characters; floats as their shortest form, integral ones already integers after
    cleaning)."""
    try:
        data = orjson.dumps(value)
    except TypeError:  # a string orjson refuses (a lone surrogate), an integer beyond 64 bits
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8", "surrogatepass")
    if b"{}" in data:  # rare: only then is the answer scanned for the strings to leave alone
        data = _EMPTY_OBJECT.sub(_empty_array, data)
    if not data.isascii():  # names with accents: escaped like PHP, only where there are any
        data = _ascii(data)
    return data.replace(b"/", b"\\/")


def error_json(exc: MoodleException, debug: bool) -> bytes:
    doc = {"exception": exc.exception, "errorcode": exc.errorcode, "message": exc.message}
    if debug and exc.debuginfo:
        doc["debuginfo"] = exc.debuginfo
    return to_json(doc)


def xml_escape(text: str) -> str:
    """htmlspecialchars: & < > " (existing entities are escaped again); forbidden XML chars removed."""
    if not _XML_SPECIAL.search(text):  # nearly every value
        return text
    text = _XML_FORBIDDEN.sub("", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _scalar_text(value) -> str:
    if value.__class__ is str:
        return xml_escape(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if value.__class__ is int or (value.__class__ is float and math.isfinite(value)):
        return repr(value)  # what json.dumps writes for these, at a fraction of its cost
    if isinstance(value, int | float):
        return json.dumps(value)  # NaN as NaN, as before
    return xml_escape(str(value))


def _xml_value(value, schema: dict | None, out: list[str]) -> None:
    """A value with no description (or a part of one that is not described): its shape decides."""
    if schema is not None:
        _writer(schema)(value, out)
    elif isinstance(value, dict):
        out.append("<SINGLE>\n")
        for key, item in value.items():
            out.append(f'<KEY name="{key}">')
            _xml_value(item, None, out)
            out.append("</KEY>\n")
        out.append("</SINGLE>\n")
    elif isinstance(value, list):
        out.append("<MULTIPLE>\n")
        for item in value:
            _xml_value(item, None, out)
        out.append("</MULTIPLE>\n")
    elif value is None:
        out.append('<VALUE null="null"/>\n')
    else:
        out.append(f"<VALUE>{_scalar_text(value)}</VALUE>\n")


@once_per_description
def _writer(schema: dict) -> Callable:
    """The XML writer of a description."""
    kind = schema["type"]
    if kind == "object":
        keys = [(f'<KEY name="{key}">', key, _writer(sub), sub["type"] in ("object", "array"))
                for key, sub in schema["properties"].items()]

        def write_object(value, out):
            value = value or {}
            out.append("<SINGLE>\n")
            for opening, key, write, nested in keys:
                item = value.get(key)
                if nested or item is None:
                    out.append(opening)
                    write(item, out)
                    out.append("</KEY>\n")
                else:  # a scalar, the usual case: one string
                    out.append(f"{opening}<VALUE>{_scalar_text(item)}</VALUE>\n</KEY>\n")
            out.append("</SINGLE>\n")
        return write_object
    if kind == "array":
        item_writer = _writer(schema["items"])

        def write_array(value, out):
            out.append("<MULTIPLE>\n")
            for item in value or []:
                item_writer(item, out)
            out.append("</MULTIPLE>\n")
        return write_array

    def write_scalar(value, out):
        out.append('<VALUE null="null"/>\n' if value is None else f"<VALUE>{_scalar_text(value)}</VALUE>\n")
    return write_scalar


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
