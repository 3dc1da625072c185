"""JSON objects stored in text columns (`state_data`), read by lists and pages that must not fail
on one damaged row."""

from __future__ import annotations

import logging

import orjson

log = logging.getLogger(__name__)


def json_object(raw, what: str) -> dict:
    """`raw` decoded, or {} when it is missing, damaged or not an object (logged, naming `what`)."""
    try:
        value = orjson.loads(raw or "{}")
    except (TypeError, ValueError):  # orjson's decode error is a ValueError
        value = None
    if not isinstance(value, dict):
        log.warning("damaged %s ignored: %.200r", what, raw)
        return {}
    return value
