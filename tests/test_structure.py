"""The shape of the code, read from its source: the import graph has no cycle, the core imports
none of the heavy or presentation libraries, and the command line stays thin."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

from conftest import ROOT

# where each installed package lives in the tree (pyproject's package-dir mapping)
PACKAGES = {"archspec": ROOT / "archspec", "archspec.backends": ROOT / "backends", "archspec.cli": ROOT / "cli"}
CORE = ["spec", "resolve", "graph", "cost", "match", "resolution", "plan", "sweep", "conventions"]
HEAVY = {"torch", "torchvision", "timm", "typer", "rich", "matplotlib", "numpy"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if "templates" in parts:
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, wherever the import statement stands (inside functions and
    under TYPE_CHECKING too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            submodules = {f"{base}.{alias.name}" for alias in node.names} & set(MODULES)
            # `from package import module` imports the module; `from module import name`, the module
            out |= submodules if len(submodules) == len(node.names) else {base}
    return out


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for name, path in MODULES.items():
        g.add_node(name)
        for target in _imports(name, path):
            g.add_edge(name, target)
    return g


def test_the_tree_is_read_as_the_installed_packages():
    assert {"archspec.graph", "archspec.cli.app", "archspec.backends.torch.model", "archspec.runner.train"} <= set(
        MODULES
    )


def test_every_package_in_the_tree_is_installed():
    """A non-editable `pip install .` ships only the packages pyproject lists; a package missing
    there imports fine from the checkout and fails on a user's machine (CI's lean install did)."""
    tomllib = pytest.importorskip("tomllib", reason="TOML is read by the standard library from Python 3.11")
    configured = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(configured["packages"])
    in_tree = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert in_tree - listed == set()
    assert set(configured["package-dir"]) <= listed


def test_the_import_graph_has_no_cycle():
    ours = _graph().subgraph(MODULES)
    cycles = list(nx.simple_cycles(ours))
    assert not cycles, cycles[:5]


@pytest.mark.parametrize("core", CORE)
def test_the_core_imports_no_torch_typer_rich_or_matplotlib(core):
    g = _graph()
    reached = nx.descendants(g, f"archspec.{core}") | {f"archspec.{core}"}
    heavy = {m for m in reached if m.split(".")[0] in HEAVY}
    via = {m: sorted(t for t in g.successors(m) if t.split(".")[0] in HEAVY) for m in reached if m in MODULES}
    assert not heavy, {m: v for m, v in via.items() if v}


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [(f.name, f.end_lineno - f.lineno + 1) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)]


def test_the_command_line_stays_thin():
    cli = [p for name, p in MODULES.items() if name.startswith("archspec.cli")]
    assert len(cli) >= 7
    too_long = {p.name: n for p in cli if (n := len(p.read_text().splitlines())) > 250}
    assert not too_long, too_long
    long_functions = [(p.name, f, n) for p in cli for f, n in _functions(p) if n > 40]
    assert not long_functions, long_functions


def test_the_command_line_raises_no_domain_errors():
    """Bad values of spec fields and function parameters are the core's to refuse."""
    cli = [p for name, p in MODULES.items() if name.startswith("archspec.cli")]
    raising = [
        (p.name, node.lineno)
        for p in cli
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "SpecError"
    ]
    assert not raising, raising


def test_no_backend_imports_the_runner():
    # the runner owns run directories and drives the backends; a backend never reaches back
    reached = {
        name: sorted(t for t in _imports(name, path) if t == "archspec.runner" or t.startswith("archspec.runner."))
        for name, path in MODULES.items()
        if name.startswith("archspec.backends")
    }
    assert not {k: v for k, v in reached.items() if v}


def test_norm_names_are_compared_only_in_the_norm_registry():
    # dispatch on a norm asks its registered kind (archspec.norms), never `norm == "bn"` elsewhere
    from archspec import norms

    names = set(norms.spec_types())
    found = []
    for name, path in MODULES.items():
        if name == "archspec.norms" or name.startswith("archspec.norms."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                constants = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
                found += [f"{path.relative_to(ROOT)}:{node.lineno}"] if constants & names else []
    assert not found
