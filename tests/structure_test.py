"""The import graph (issue 19): imports point down the layers only, and no module imports itself
back through others. Function-level imports count too.

    moodle_core                          database engines, config, Moodle's read model, cron
    webservice                           Moodle's web-service layer (knows no plugin)
    local_alx_report_api db/ settings    declarations: tables, services, tasks, settings
    local_alx_report_api classes/        the domain: everything that decides something
    local_alx_report_api task/           thin scheduled tasks
    controlcenter web, svg               the page framework
    controlcenter pages                  thin pages; never import one another
    cli, webservice.wsgi                 entry points that put it all together
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("moodle_core", "webservice", "local_alx_report_api")
FRAMEWORK = {"local_alx_report_api.controlcenter", "local_alx_report_api.controlcenter.web",
             "local_alx_report_api.controlcenter.svg"}
LATERAL = {0, 1, 2, 3, 5}  # layers whose modules may import one another (tasks and pages may not)


def layer(module: str) -> int:
    if module.startswith("moodle_core"):
        return 0
    if module in ("webservice.wsgi", "local_alx_report_api.cli"):
        return 9
    if module.startswith("webservice"):
        return 1
    if module.startswith("local_alx_report_api.classes"):
        return 3
    if module.startswith("local_alx_report_api.task"):
        return 4
    if module in FRAMEWORK:
        return 5
    if module.startswith("local_alx_report_api.controlcenter"):
        return 6
    return 2  # the plugin's declarations: db/, lang/, settings, version


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `module` imports (a `from package import name` of a submodule names it)."""
    out = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known}
    return {name for name in out if name in known and name != module}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports(module, path, known) for module, path in known.items()}


def test_imports_point_down_the_layers():
    wrong = sorted(f"{a} ({layer(a)}) imports {b} ({layer(b)})" for a, targets in graph().items() for b in targets
                   if layer(b) > layer(a) or (layer(b) == layer(a) and layer(a) not in LATERAL
                                              and not b.endswith((".task", ".controlcenter"))))
    assert wrong == []


def test_no_import_cycle():
    edges = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_rule_sees_a_back_import():
    """The check itself: a task imported by a domain module is caught."""
    assert layer("local_alx_report_api.task.reconcile_task") > layer("local_alx_report_api.classes.jobs")
    assert layer("local_alx_report_api.controlcenter.overview") == 6 not in LATERAL
