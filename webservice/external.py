"""Moodle's external API, described with JSON Schema (protocol.md sections 6 and 7).

A function describes its parameters and returns as JSON Schema documents built with `value`,
`single` and `multiple` (Moodle's external_value / external_single_structure /
external_multiple_structure). Each schema node carries Moodle's PARAM type and whether it is
required in `x-param` / `x-required`. Parameters are cast from PHP's strings like Moodle does,
then checked with jsonschema; return values are rebuilt from the description and cleaned."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from webservice.errors import InvalidParameterException, InvalidResponseException
from webservice.phpparams import php_int

_JSON_TYPES = {"PARAM_INT": "integer", "PARAM_FLOAT": "number", "PARAM_BOOL": "boolean"}


def value(param: str, description: str = "", *, required: bool = True, default: Any = None) -> dict:
    """A scalar (external_value)."""
    node = {"type": _JSON_TYPES.get(param, "string"), "description": description, "x-param": param,
            "x-required": required}
    if default is not None:
        node["default"] = default
    return node


def single(keys: dict[str, dict], description: str = "", *, required: bool = True) -> dict:
    """A structure with keys in description order (external_single_structure)."""
    return {"type": "object", "description": description, "properties": keys,
            "required": [k for k, v in keys.items() if v.get("x-required") and "default" not in v],
            "additionalProperties": False, "x-required": required}


def multiple(item: dict, description: str = "", *, required: bool = True, default: list | None = None) -> dict:
    """A list of items (external_multiple_structure)."""
    node = {"type": "array", "items": item, "description": description, "x-required": required}
    if default is not None:
        node["default"] = default
    return node


@dataclass(frozen=True)
class Encoded:
    """A function's answer already cleaned and written in the request's format (a cached page,
    protocol.md 10 and 11): the server sends `body` as it is."""

    body: bytes
    count: int  # the request log's record_count


# -- parameters --------------------------------------------------------------------------------
_ALPHANUMEXT = re.compile(r"^[A-Za-z0-9_-]*$")
_ALPHA = re.compile(r"^[A-Za-z]*$")


def _invalid_scalar(raw, param: str) -> InvalidParameterException:
    expected = param.removeprefix("PARAM_").lower()
    return InvalidParameterException(
        f"Invalid external api parameter: the value is \"{raw}\", the server was expecting \"{expected}\" type")


def _cast_scalar(raw, schema: dict):
    if isinstance(raw, dict | list):
        raise InvalidParameterException("Scalar type expected, array or object received.")
    param, text = schema["x-param"], str(raw)
    if param == "PARAM_INT":
        number = php_int(text)
        if number is None:
            raise _invalid_scalar(text, param)
        return number
    if param in ("PARAM_ALPHANUMEXT", "PARAM_ALPHA"):  # Moodle: a value its cleaning would change is invalid
        if not (_ALPHANUMEXT if param == "PARAM_ALPHANUMEXT" else _ALPHA).fullmatch(text):
            raise _invalid_scalar(text, param)
        return text
    return text


def _nested(key, exc: InvalidParameterException) -> InvalidParameterException:
    return InvalidParameterException(f"{key} => Invalid parameter value detected: {exc.debuginfo}")


def _cast(raw, schema: dict):
    if schema["type"] == "object":
        if not isinstance(raw, dict):
            raise InvalidParameterException("Only arrays accepted. The bad value is: '" + str(raw) + "'")
        out = {}
        for key, sub in schema["properties"].items():
            if key not in raw:
                if "default" in sub:
                    out[key] = sub["default"]
                elif sub.get("x-required"):
                    raise InvalidParameterException(f"Missing required key in single structure: {key}")
                continue
            try:
                out[key] = _cast(raw[key], sub)
            except InvalidParameterException as exc:
                raise _nested(key, exc) from None
        extra = [k for k in raw if k not in schema["properties"]]
        if extra:
            raise InvalidParameterException(f"Unexpected keys ({', '.join(extra)}) detected in parameter array.")
        return out
    if schema["type"] == "array":
        if not isinstance(raw, dict | list):
            raise InvalidParameterException(f"Only arrays accepted. The bad value is: '{raw}'")
        items = list(raw.values()) if isinstance(raw, dict) else list(raw)
        out = []
        for index, item in enumerate(items):
            try:
                out.append(_cast(item, schema["items"]))
            except InvalidParameterException as exc:
                raise _nested(index, exc) from None
        return out
    return _cast_scalar(raw, schema)


def validate_parameters(schema: dict, raw: dict) -> dict:
    """Moodle's validate_parameters: defaults, casting, unknown keys; then JSON Schema."""
    cleaned = _cast(raw, schema)
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(cleaned))
    if error is not None:  # the error jsonschema.validate raises
        raise error
    return cleaned


def once_per_description(build: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """`build(description)` made once per description, found by identity (each description is
    kept alive, so its id is never reused): cleaners, validators and XML writers, which a page of
    1000 elements (12,000 values) would otherwise rebuild."""
    built: dict[int, tuple[dict, Any]] = {}

    def get(schema: dict):
        known = built.get(id(schema))
        if known is None:
            known = built[id(schema)] = (schema, build(schema))
        return known[1]
    return get


@once_per_description
def _validator(schema: dict):
    """A parameter description checked and compiled (jsonschema.validate checks the description
    itself on every call: most of a small request's time)."""
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


# -- returns -----------------------------------------------------------------------------------
_MULTILANG = re.compile(r'<(span lang="[a-z_-]+" class="multilang"|span class="multilang" lang="[a-z_-]+"|'
                        r'/span|lang lang="[a-z_-]+"|/lang)>', re.ASCII)
_EMAIL = re.compile(r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
                    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$", re.ASCII)


def strip_tags(text: str) -> str:
    """Rule T of protocol.md section 7: remove tags, keep multilang tags and lone `<`."""
    if "<" not in text:  # nearly every value: nothing to remove
        return text
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "<" and i + 1 < n and (text[i + 1].isalpha() or text[i + 1] in "/!?"):
            keep = _MULTILANG.match(text, i)
            end = text.find(">", i)
            if keep:
                out.append(keep.group(0))
                i = keep.end()
                continue
            i = n if end < 0 else end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def clean_email(text: str) -> str:
    if text == "" or (_EMAIL.fullmatch(text) and "<" not in text and ">" not in text):
        return text
    return ""


def clean_scalar(raw, schema: dict):
    param = schema["x-param"]
    if raw is None:
        return None
    if param == "PARAM_INT":
        return int(raw)
    if param == "PARAM_FLOAT":
        number = float(raw)
        return int(number) if number.is_integer() else number
    if param == "PARAM_BOOL":
        return bool(raw)
    if param == "PARAM_TEXT":
        return strip_tags(str(raw))
    if param == "PARAM_EMAIL":
        return clean_email(str(raw))
    return str(raw)


def clean_returns(schema: dict, data, changed: list | None = None):
    """Rebuild `data` from its description: described keys in order, missing optional keys
    omitted, values cast and cleaned. Changed values are appended to `changed` as (key, before)."""
    return _cleaner(schema)(data, changed)




def _clean_as_is(schema: dict) -> type | None:
    """The type of value that cleaning returns unchanged for this scalar (PARAM_INT: an int,
    PARAM_TEXT: a str without `<`), so the page of 12000 values skips the call for nearly all."""
    return {"PARAM_INT": int, "PARAM_TEXT": str}.get(schema.get("x-param")) if schema["type"] not in (
        "object", "array") else None


@once_per_description
def _cleaner(schema: dict) -> Callable:
    """The cleaning function of a description."""
    if schema["type"] == "array":
        item = _cleaner(schema["items"])

        def clean_array(data, changed):
            if not isinstance(data, list):
                raise InvalidResponseException("Only arrays accepted.")
            return [item(element, changed) for element in data]
        return clean_array
    if schema["type"] != "object":
        return lambda raw, changed: clean_scalar(raw, schema)
    fields = [(key, _cleaner(sub), sub["type"], bool(sub.get("x-required")),
               sub["type"] not in ("object", "array") and sub.get("x-param") in ("PARAM_TEXT", "PARAM_EMAIL"),
               _clean_as_is(sub)) for key, sub in schema["properties"].items()]

    def clean_object(data, changed):
        if not isinstance(data, dict):
            raise InvalidResponseException("Only arrays accepted.")
        out = {}
        for key, clean, kind, required, textual, as_is in fields:
            raw = data.get(key)
            if raw.__class__ is as_is and (as_is is not str or "<" not in raw):
                out[key] = raw  # what cleaning keeps as it is: an int, a text without a tag
                continue
            if raw is None:
                if required and kind != "array":
                    raise InvalidResponseException(f"Error in response - Missing following required key in a "
                                                   f"single structure: {key}")
                if kind == "array" and required:
                    out[key] = []
                continue
            value = out[key] = clean(raw, changed)
            if changed is not None and textual and value != raw:
                changed.append((key, raw))
        return out
    return clean_object
