"""The layout by role: imports point down, from the edges to the models."""

import ast
import importlib
import re

import pytest

from .helpers import ROOT

# Lower layers never import higher ones; a module may import its own layer.
LAYERS = [
    # The bottom: the table, settings, words and the registry of workers.
    {
        "models",
        "conf",
        "exceptions",
        "log",
        "retry",
        "worker_registry",
        "expressions",
        "upstream",
        "migrations",
    },
    {"notify"},  # the doorbell: NOTIFY and pushes to RQ
    {"core"},  # tasks, transitions, running and recording a job
    {"maintenance"},  # leader lock, rescue, re-dispatch, prune
    {"dbworker", "rqworker", "backend"},  # the runners, and enqueue
    {"web", "admin", "management", "apps", "examples", "checks"},  # people-facing edges
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def part_of(module):
    """The layer name of a module under `jobs` (its first name below it)."""
    return module.split(".")[1] if module.startswith("jobs.") else None


def imports(path):
    """Yield the `jobs.*` modules the file at `path` imports."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        package += ".__init__"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module]))
            if node.module is None:
                yield from (f"{module}.{alias.name}" for alias in node.names)
            else:
                yield module


MODULES = sorted((ROOT / "jobs").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports__point_down(path):
    here = part_of(module_name(path))
    upward = [
        module
        for module in imports(path)
        if part_of(module) in RANK and RANK[part_of(module)] > RANK[here]
    ]
    assert upward == [], f"{here} (layer {RANK[here]}) imports {upward}"


def module_name(path):
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_layers__name_every_part_of_the_package():
    parts = {part_of(module_name(path)) for path in MODULES}
    assert parts - {"__init__"} <= set(RANK)


def test_imports__are_read_with_relative_imports_resolved():
    found = set(imports(ROOT / "jobs" / "core" / "transitions.py"))
    assert {"jobs.notify", "jobs.models", "jobs.core.guard"} <= found


def module_imports(path):
    """Yield the `jobs` modules the file at `path` imports, a package's
    submodule named in `from package import name` included."""
    known = {module_name(p).removesuffix(".__init__") for p in MODULES}
    for module in imports(path):
        if module in known:
            yield module
    package = module_name(path)
    if path.name == "__init__.py":
        package += ".__init__"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module]))
            for alias in node.names:
                if f"{module}.{alias.name}" in known:
                    yield f"{module}.{alias.name}"


def test_imports__form_no_cycle():
    graph = {
        module_name(path).removesuffix(".__init__"): set(module_imports(path))
        for path in MODULES
    }
    done, path = set(), []

    def visit(module):
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def generated(path):
    """Say whether `path` is made by running something (git ignores it)."""
    ignored = (ROOT / ".gitignore").read_text().split()
    return any(path.startswith(rule.strip("/")) for rule in ignored if "/" in rule)


def quoted(document):
    """The `quoted` words of a Markdown document at the root."""
    return re.findall(r"`([^`\s]+)`", (ROOT / document).read_text())


@pytest.mark.parametrize("document", ["README.md", "ARCHITECTURE.md"])
def test_documents__name_files_that_exist(document):
    named = [
        w
        for w in quoted(document)
        if re.fullmatch(r"\w[\w./-]*(\.(py|md)|/)", w) and not generated(w)
    ]
    missing = [w for w in named if not any(ROOT.glob(f"**/{w.rstrip('/')}"))]
    assert named and missing == []


def test_architecture__names_modules_and_functions_that_exist():
    dotted = [
        w
        for w in quoted("ARCHITECTURE.md")
        if re.fullmatch(r"[a-z_]+(\.[A-Za-z_]+)+", w) and not w.endswith(".py")
    ]
    missing = [name for name in dotted if not resolves(f"jobs.{name}")]
    assert dotted and missing == []


def resolves(name):
    """Say whether `name` is a module, or an attribute path within one."""
    parts = name.split(".")
    for cut in range(len(parts), 1, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute, None)
        return found is not None
    return False
