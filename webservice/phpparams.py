"""Request parameters decoded the way PHP fills $_GET/$_POST (protocol.md section 2)."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

_KEY = re.compile(r"\[([^\]]*)\]")
_NAME = re.compile(r"^([^\[]+)((?:\[[^\]]*\])+)$")


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """`a=1&b=2` → pairs, percent- and `+`-decoded as UTF-8 (invalid bytes become U+FFFD)."""
    pairs = []
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote_plus(name, errors="replace"), unquote_plus(value, errors="replace")))
    return pairs


def php_parameters(pairs: list[tuple[str, str]]) -> dict:
    """Build PHP's nested arrays from raw pairs: `a[]`, `a[k]`, `a[k][j]`; the last value wins.

    Arrays are dicts with string keys (`a[]` appends the next integer key, as PHP does); an array
    built only by `[]` appends is a list."""
    result: dict = {}
    appended: dict[int, bool] = {}  # id(array) → every key so far came from `[]`
    for raw_name, value in pairs:
        match = _NAME.match(raw_name)
        base, keys = (match.group(1), _KEY.findall(match.group(2))) if match else (raw_name, [])
        base = base.replace(".", "_").replace(" ", "_").replace("[", "_")
        if not base:
            continue
        if not keys:
            result[base] = value
            continue
        if not isinstance(result.get(base), dict):
            result[base] = {}
        node = result[base]
        for depth, key in enumerate(keys):
            appended[id(node)] = appended.get(id(node), True) and key == ""
            key = key if key != "" else str(_next_index(node))
            if depth == len(keys) - 1:
                node[key] = value
            else:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                node = node[key]
    return {name: _lists(value, appended) for name, value in result.items()}


def _lists(value, appended: dict[int, bool]):
    if not isinstance(value, dict):
        return value
    items = {k: _lists(v, appended) for k, v in value.items()}
    return list(items.values()) if appended.get(id(value)) else items


def _next_index(node: dict) -> int:
    numbers = [int(k) for k in node if re.fullmatch(r"-?\d+", k)]
    return max(numbers) + 1 if numbers else 0
