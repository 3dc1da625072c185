"""The plugin's language strings (lang/en.json), as Moodle's get_string()."""

import json
from functools import cache
from importlib import resources


@cache
def _strings() -> dict[str, str]:
    return json.loads(resources.files(__package__).joinpath("en.json").read_text(encoding="utf-8"))


def get_string(identifier: str, **values) -> str:
    return _strings()[identifier].format(**values)
