"""Declared settings and the `settings.ini` loader (settings.md section 1).

Every setting is declared once as a `Setting`; the file and the environment only supply values,
which are checked against the declarations before anything runs."""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# `scheme://user:password@`: the password part (a database or gateway URL may carry one)
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^/:\s]*:)[^/\s]*@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&\s#]*", re.IGNORECASE)


def mask_urls(text: str) -> str:
    """Every URL's password in a text masked (decision 51): `scheme://user:********@host/…`,
    and a password given as a query parameter."""
    return _QUERY_PASSWORD.sub(r"\1********", _URL_PASSWORD.sub(r"\1********@", text))


_BOOLS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}


class ConfigError(Exception):
    """A settings problem that stops start-up; its text is the one line shown to the user."""


@dataclass(frozen=True)
class Setting:
    """One declared setting: where it lives, its type, default, allowed range and help text."""

    section: str
    name: str
    type: str  # bool, int, float, string, list, enum, multiline, timezone, cidrs, cron
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    min_length: int = 0

    @property
    def env_name(self) -> str:
        return f"ALX_{self.section}_{self.name}".upper()

    def expected(self) -> str:
        """The `<type/range>` part of the invalid-value message."""
        if self.type == "enum":
            return "one of " + ", ".join(self.choices)
        if self.type in ("int", "float"):
            if self.min is not None and self.max is not None:
                return f"{self.type} {_num(self.min)}-{_num(self.max)}"
            if self.min is not None:
                return f"{self.type} >= {_num(self.min)}"
            return self.type
        if self.type == "timezone":
            return "an IANA time zone name"
        if self.type == "cidrs":
            return "a comma-separated list of IP addresses or CIDR ranges"
        if self.type == "cron":
            return "five cron fields (minute hour day month dayofweek) or disabled"
        if self.type == "string" and self.min_length:
            return f"a string of at least {self.min_length} characters"
        return self.type

    def show(self, value: Any) -> str:
        """A value as people see it (the `settings` command, the control center): lists
        comma-joined, booleans true/false, secrets and a password inside a URL masked."""
        if self.secret and value:
            return "********"
        if isinstance(value, bool):
            return "true" if value else "false"
        items = value if isinstance(value, list) else [str(value)]  # a list of URLs: each one's password
        return ", ".join(mask_urls(item) for item in items)

    def parse(self, raw: str) -> Any:
        """Convert a raw text value, raising ValueError when it does not fit."""
        text = raw.strip() if self.type != "multiline" else raw.strip("\n")
        if self.type == "bool":
            return _BOOLS[text.lower()]
        if self.type in ("int", "float"):
            if self.type == "int" and not re.fullmatch(r"[+-]?\d+", text):
                raise ValueError(text)
            value = int(text) if self.type == "int" else float(text)
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise ValueError(text)
            return value
        if self.type == "enum":
            if text not in self.choices:
                raise ValueError(text)
            return text
        if self.type in ("list", "cidrs"):
            items = [item.strip() for item in text.split(",") if item.strip()]
            if self.type == "cidrs":
                for item in items:
                    ipaddress.ip_network(item, strict=False)
            return items
        if self.type == "timezone":
            if text:
                try:
                    zoneinfo.ZoneInfo(text)
                except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                    raise ValueError(text) from exc
            return text
        if self.type == "cron":
            if text != "disabled" and not _valid_cron(text):
                raise ValueError(text)
            return text
        if self.type == "string" and text and len(text) < self.min_length:
            raise ValueError(text)
        return text


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_CRON_ITEM = re.compile(r"^(\*|R|\d+(-\d+)?)(/\d+)?$")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _valid_cron(text: str) -> bool:
    fields = text.split()
    if len(fields) != 5:
        return False
    for value, (low, high) in zip(fields, _CRON_RANGES, strict=True):
        for item in value.split(","):
            if not _CRON_ITEM.match(item):
                return False
            numbers = [int(n) for n in re.findall(r"\d+", item.split("/")[0])]
            if any(n < low or n > high for n in numbers):
                return False
    return True


@dataclass
class Settings:
    """Effective values, with the source of each (`default`, the file path, or `env NAME`)."""

    declarations: dict[tuple[str, str], Setting]
    values: dict[tuple[str, str], Any] = field(default_factory=dict)
    sources: dict[tuple[str, str], str] = field(default_factory=dict)
    path: str | None = None

    def get(self, section: str, name: str) -> Any:
        return self.values[(section, name)]

    _sections: dict = field(default_factory=dict, repr=False, compare=False)

    def section(self, section: str) -> SimpleNamespace:
        """The section's values, built once (a request reads settings dozens of times); read-only."""
        if self._sections.get("") != len(self.values):  # built again when a value was added since
            self._sections = {"": len(self.values)}
        found = self._sections.get(section)
        if found is None:
            found = self._sections[section] = SimpleNamespace(
                **{n: v for (s, n), v in self.values.items() if s == section})
        return found

    def __getattr__(self, section: str) -> SimpleNamespace:
        if section.startswith("_") or section in ("declarations", "values", "sources", "path"):
            raise AttributeError(section)
        return self.section(section)

    def describe(self) -> list[tuple[str, str, str, str]]:
        """(section, name, shown value, source) for every setting, secrets masked."""
        return [(setting.section, setting.name, setting.show(self.values[key]), self.sources[key])
                for key, setting in self.declarations.items()]


def settings_path(cli_path: str | None, environ: Mapping[str, str]) -> Path:
    """`--config PATH`, else `ALX_REPORT_API_SETTINGS`, else `settings.ini` here."""
    return Path(cli_path or environ.get("ALX_REPORT_API_SETTINGS") or "settings.ini")


def load_settings(declarations: Iterable[Setting], path: str | os.PathLike | None = None,
                  environ: Mapping[str, str] | None = None, *, must_exist: bool = False) -> Settings:
    """Read `path` (if it exists) and the `ALX_<SECTION>_<NAME>` environment over the defaults.

    Raises ConfigError with the exact messages of settings.md for unknown names and bad values."""
    environ = os.environ if environ is None else environ
    decls = {(d.section, d.name): d for d in declarations}
    settings = Settings(decls, path=str(path) if path else None)
    for key, decl in decls.items():
        settings.values[key] = decl.default
        settings.sources[key] = "default"
    raw: dict[tuple[str, str], tuple[str, str]] = {}
    if path is not None and Path(path).exists():
        parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#", ";"),
                                           inline_comment_prefixes=None, strict=True,
                                           default_section="\x00none")
        parser.optionxform = str  # keep names as written; matching is case-sensitive
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise ConfigError(f"Cannot read {path}: {str(exc).splitlines()[0]}") from exc
        sections = {d.section for d in decls.values()}
        for section in parser.sections():
            if section not in sections:
                names = list(parser[section])
                raise ConfigError(f"Unknown setting [{section}]" + (f" {names[0]}" if names else ""))
            for name, value in parser.items(section):
                if (section, name) not in decls:
                    raise ConfigError(f"Unknown setting [{section}] {name}")
                raw[(section, name)] = (value, str(path))
    elif must_exist and path is not None:
        raise ConfigError(f"Settings file not found: {path}")
    for key, decl in decls.items():
        if decl.env_name in environ:
            raw[key] = (environ[decl.env_name], f"env {decl.env_name}")
    for key, (value, source) in raw.items():
        decl = decls[key]
        try:
            settings.values[key] = decl.parse(value)
        except (ValueError, KeyError) as exc:
            shown = value.strip()
            raise ConfigError(f"Invalid value for [{decl.section}] {decl.name}: "
                              f"expected {decl.expected()}, got '{shown}'") from exc
        settings.sources[key] = source
    return settings
