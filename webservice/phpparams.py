"""Request parameters decoded the way PHP fills $_GET/$_POST (protocol.md section 2), in time
linear in the input and bounded like PHP's `max_input_vars` and `max_input_nesting_level`."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

MAX_INPUT_VARS = 1000  # PHP's defaults; the server takes [webservice] settings
MAX_INPUT_NESTING = 64
_INT_KEY = re.compile(r"-?[1-9][0-9]{0,18}|0")  # PHP turns these keys into integers (within int64)
_INT64 = (-(2**63), 2**63 - 1)


class InputLimitError(ValueError):
    """Too many variables or too deep a name: PHP's own warning text."""


def parse_pairs(text: str, max_vars: int | None = None) -> list[tuple[str, str]]:
    """`a=1&b=2` → pairs, percent- and `+`-decoded as UTF-8 (invalid bytes become U+FFFD).
    More than `max_vars` pairs raise InputLimitError (counted before any is decoded)."""
    parts = [part for part in text.split("&") if part]
    if max_vars is not None and len(parts) > max_vars:
        raise too_many(max_vars)
    pairs = []
    for part in parts:
        name, _, value = part.partition("=")
        pairs.append((unquote_plus(name, errors="replace"), unquote_plus(value, errors="replace")))
    return pairs


def too_many(max_vars: int) -> InputLimitError:
    return InputLimitError(f"Input variables exceeded {max_vars}. To increase the limit change max_input_vars "
                           "in php.ini.")


def _split_name(raw: str) -> tuple[str, list[str]]:
    """(base, keys) of `base[k1][k2]…`; a name whose rest is not made of whole `[…]` groups is
    a plain name. One pass over the name."""
    start = raw.find("[")
    if start <= 0:
        return raw, []
    keys, pos, n = [], start, len(raw)
    while pos < n:
        end = raw.find("]", pos + 1) if raw[pos] == "[" else -1
        if end < 0:
            return raw, []
        keys.append(raw[pos + 1:end])
        pos = end + 1
    return raw[:start], keys


def php_parameters(pairs: list[tuple[str, str]], max_nesting: int = MAX_INPUT_NESTING) -> dict:
    """Build PHP's nested arrays from raw pairs: `a[]`, `a[k]`, `a[k][j]`; the last value wins.

    Arrays are dicts with string keys (`a[]` appends the next integer key, as PHP does); an array
    built only by `[]` appends is a list. Each array keeps its next free integer key, so a pair
    costs the length of its name, whatever came before. A name nested deeper than `max_nesting`
    raises InputLimitError."""
    result: dict = {}
    appended: dict[int, bool] = {}  # id(array) → every key so far came from `[]`
    next_free: dict[int, int] = {}  # id(array) → PHP's next free integer key
    kept: list[dict] = []  # every array made, so that no id above is reused by a new one
    for raw_name, value in pairs:
        base, keys = _split_name(raw_name)
        if len(keys) > max_nesting:
            raise InputLimitError(f"Input variable nesting level exceeded {max_nesting}. To increase the limit "
                                  "change max_input_nesting_level in php.ini.")
        base = base.replace(".", "_").replace(" ", "_").replace("[", "_")
        if not base:
            continue
        if not keys:
            result[base] = value
            continue
        if not isinstance(result.get(base), dict):
            result[base] = {}
            kept.append(result[base])
        node = result[base]
        for depth, key in enumerate(keys):
            appended[id(node)] = appended.get(id(node), True) and key == ""
            current = next_free.get(id(node))  # None: no integer key yet
            if key == "":
                key = str(0 if current is None else current)
            number = php_int(key)
            if number is not None and (current is None or number >= current):
                next_free[id(node)] = number + 1
            if depth == len(keys) - 1:
                node[key] = value
            else:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                    kept.append(node[key])
                node = node[key]
    return {name: _lists(value, appended) for name, value in result.items()}


def php_int(text: str) -> int | None:
    """The integer a canonical decimal string within 64 bits stands for (how PHP reads an array
    key, and PARAM_INT), else None. At most 19 digits reach int(): Python refuses over 4300."""
    if not _INT_KEY.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64[0] <= number <= _INT64[1] else None


def _lists(value, appended: dict[int, bool]):
    if not isinstance(value, dict):
        return value
    items = {k: _lists(v, appended) for k, v in value.items()}
    return list(items.values()) if appended.get(id(value)) else items
