"""The function registry, found the way Moodle finds functions: by the dotted names that each
component's services module lists (like classname/classpath in db/services.php), resolved at
start-up. The web-service layer never imports a plugin by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType


@dataclass
class ExternalFunction:
    name: str
    component: str
    classname: str
    methodname: str
    classpath: str
    description: str
    type: str
    module: ModuleType
    parameters: dict = field(default_factory=dict)
    returns: dict = field(default_factory=dict)

    def execute(self, call, **params):
        return self.module.execute(call, **params)


@dataclass
class Registry:
    functions: dict[str, ExternalFunction]
    versions: dict[str, str]  # component → version string (site info)
    response_headers: list[Callable] = field(default_factory=list)  # hooks: (call) → {header: value}
    after_request: list[Callable] = field(default_factory=list)  # hooks: (call) → None, after the log row
    routes: dict[str, type] = field(default_factory=dict)  # extra paths of the web app → resource classes
    mounts: list[Callable] = field(default_factory=list)  # (app, site) → None: add a group of routes


def load_registry(service_modules: list[str]) -> Registry:
    functions, versions, hooks, after, routes, mounts = {}, {}, [], [], {}, []
    for dotted in service_modules:
        services = importlib.import_module(dotted)
        if getattr(services, "VERSION", None):
            versions[services.COMPONENT] = str(services.VERSION)
        if getattr(services, "RESPONSE_HEADERS", None):
            hooks.append(_resolve(services.RESPONSE_HEADERS))
        declared = getattr(services, "AFTER_REQUEST", [])
        after += [_resolve(d) for d in ([declared] if isinstance(declared, str) else declared)]
        routes.update({path: _resolve(dotted) for path, dotted in getattr(services, "ROUTES", {}).items()})
        mounts += [_resolve(d) for d in getattr(services, "MOUNTS", [])]
        for name, spec in services.FUNCTIONS.items():
            module = importlib.import_module(spec["module"])
            functions[name] = ExternalFunction(
                name, services.COMPONENT, spec["classname"], spec["methodname"], spec["classpath"],
                spec["description"], spec["type"], module, module.execute_parameters(), module.execute_returns())
    return Registry(functions, versions, hooks, after, routes, mounts)


def _resolve(dotted: str) -> Callable:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)
