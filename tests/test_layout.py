"""The tree shows the architecture and the import graph keeps it: core -> edges -> workflows ->
interfaces, one way, no cycles, benchmarks and tests never imported by the product, one exception
hierarchy, a curated public API, and no web3 private modules."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import dso
import dso.errors

PACKAGE = Path(dso.__file__).parent
# Which layers each layer may import (besides itself, `dso.errors` and `dso.__init__`'s version).
ALLOWED = {
    "core": set(),
    "edges": {"core"},
    "workflows": {"core", "edges"},
    "interfaces": {"core", "edges", "workflows"},
    "bench": {"core", "edges", "workflows", "interfaces"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_dso_modules(path: Path, modules: set[str]) -> set[str]:
    """Every dso module `path` imports, at module level or inside functions (a hidden cycle is
    still a cycle)."""
    found: set[str] = set()
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "dso":
                # the deepest dso module the name refers to
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != this:
                    found.add(name)
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {name: imported_dso_modules(path, set(modules)) for name, path in modules.items()}


def test_every_module_lives_in_a_layer(graph):
    loose = sorted(m for m in graph if layer(m) is None and m not in ("dso", "dso.errors", "dso.__main__"))
    assert not loose, f"modules outside core/edges/workflows/interfaces/bench: {loose}"


def test_imports_point_one_way_core_edges_workflows_interfaces(graph):
    wrong = []
    for module, imports in graph.items():
        own = layer(module)
        if own is None:
            continue
        for target in imports:
            other = layer(target)
            if other is not None and other != own and other not in ALLOWED[own]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_product_module_imports_benchmarks_or_tests(graph):
    wrong = [f"{m} -> {t}" for m, imports in graph.items() if layer(m) != "bench" for t in imports if t.startswith("dso.bench")]
    sources = [p for name, p in product_modules().items() if layer(name) != "bench"]
    wrong += [str(p) for p in sources if any(line.strip().startswith(("import tests", "from tests")) for line in p.read_text().splitlines())]
    assert not wrong


def test_the_import_graph_has_no_cycles(graph):
    """Tarjan's strongly connected components over every import, module level or inside a function;
    a package importing its own submodules (its `__init__`) is the only edge excused."""
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not (t.startswith(m + ".") and m in ("dso",))} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_public_api_lists_importable_documented_names():
    assert "Registry" in dso.__all__ and "Library" in dso.__all__ and "publish" in dso.__all__
    for name in dso.__all__:
        value = getattr(dso, name)
        if name != "__version__":
            assert inspect.getdoc(value), f"dso.{name} has no docstring"


def test_every_error_class_is_defined_in_dso_errors_and_exported():
    defined_elsewhere = []
    for info in pkgutil.walk_packages(dso.__path__, "dso."):
        if info.name in ("dso.__main__",) or info.name.startswith("dso.bench"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, dso.errors.DsoError) and value.__module__ != "dso.errors":
                defined_elsewhere.append(f"{value.__module__}.{name}")
    assert not defined_elsewhere
    errors = {n for n, v in vars(dso.errors).items() if inspect.isclass(v) and issubclass(v, dso.errors.DsoError)}
    assert errors <= set(dso.__all__), f"errors missing from dso.__all__: {sorted(errors - set(dso.__all__))}"


def test_no_module_touches_web3_private_api():
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if "web3._" in p.read_text() or "._encode_transaction_data" in p.read_text()]
    assert not offenders


def test_import_dso_loads_no_heavy_dependency():
    """`import dso` (and `dso --help`) must stay cheap: no web3, torch or numpy until used."""
    import subprocess
    import sys

    code = "import sys, dso; print(','.join(m for m in ('web3', 'torch', 'numpy', 'sqlite3') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_every_command_loads_under_its_name_and_a_query_never_imports_web3():
    """The CLI imports a command's module only when it runs: `dso query` (cold-start target, issue 9)
    must not pay for web3, and every name in COMMANDS must resolve to the command of that name."""
    code = (
        "import sys, click\n"
        "from dso.interfaces.cli import COMMANDS, cli\n"
        "ctx = click.Context(cli)\n"
        "cli.get_command(ctx, 'query')\n"
        "assert 'web3' not in sys.modules and 'torch' not in sys.modules, sorted(m for m in ('web3', 'torch') if m in sys.modules)\n"
        "assert all(cli.get_command(ctx, name).name == name for name in COMMANDS)\n"
        "assert cli.list_commands(ctx) == sorted(COMMANDS)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
