"""The shape of the package, read from its source with ast (nothing is imported):
arrows point down (cli -> commands -> mechanics), only the CLI talks to the terminal
through click, and no two modules or top-level parts import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "subkit"
# The participant's standalone files (numpy and keras only), not part of subkit's graph.
STANDALONE = ("subkit.templates",)
# Where click belongs: the command line and the entry point that turns errors into lines.
CLICK_ALLOWED = ("subkit.cli", "subkit.__main__")
# Imports that still point the wrong way, each with where it goes; empty when the house is
# in order.
KNOWN_CLICK: set[str] = set()
KNOWN_CYCLES: list[set[str]] = []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST):
    """Every node, except what sits under ``if TYPE_CHECKING:`` (never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """Modules ``name`` imports anywhere (module level or inside functions); ``from pkg
    import mod`` counts as importing ``pkg.mod``, not ``pkg``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            subs = {f"{module}.{a.name}" for a in node.names} & modules
            found.update(subs)
            if len(subs) < len(node.names):  # names defined in the module itself
                found.add(module)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    files = {n: p for n, p in files.items() if not n.startswith(STANDALONE)}
    return {n: _imports(n, p, set(files)) for n, p in files.items()}


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph():
    return _graph()


def test_the_graph_is_read(graph):
    assert {"subkit.cli.app", "subkit.grader.scoring", "subkit.data.split",
            "subkit.ui"} <= set(graph)
    assert "subkit.errors" in graph["subkit.data.split"]
    assert "click" in graph["subkit.cli.options"]


def test_only_the_cli_imports_click(graph):
    offenders = {n for n, deps in graph.items()
                 if "click" in deps and not n.startswith(CLICK_ALLOWED)}
    assert offenders == KNOWN_CLICK


def test_nothing_below_the_cli_imports_it(graph):
    offenders = {n for n, deps in graph.items()
                 if any(d == "subkit.cli" or d.startswith("subkit.cli.") for d in deps)
                 and not n.startswith(CLICK_ALLOWED)}
    assert offenders == set()


def test_mechanics_do_not_import_the_commands(graph):
    offenders = {n for n, deps in graph.items()
                 if any(d == "subkit.commands" or d.startswith("subkit.commands.") for d in deps)
                 and not n.startswith((*CLICK_ALLOWED, "subkit.commands"))}
    assert offenders == set()


def test_no_import_cycles_between_modules(graph):
    inner = {n: {d for d in deps if d in graph and d != n} for n, deps in graph.items()}
    cycles = _cycles(inner)
    allowed = [c for c in cycles if any({_top(m) for m in c} <= k for k in KNOWN_CYCLES)]
    assert [c for c in cycles if c not in allowed] == []


def test_no_import_cycles_between_top_level_parts(graph):
    tops: dict[str, set[str]] = {}
    for n, deps in graph.items():
        for d in deps:
            if d in graph and d != "subkit" and _top(d) != _top(n):
                tops.setdefault(_top(n), set()).add(_top(d))
    assert _cycles(tops) == KNOWN_CYCLES


# -- the kinds of competition (subkit.kinds) ------------------------------------------------
# What names a kind: Profile.kind, its task, input kind and output kind.
KIND_NAMES = {"classification", "series-classification", "forecasting", "segmentation",
              "labels", "masks", "forecasts", "images", "series"}
KIND_ATTRS = {"kind", "output_kind", "task", "input_kind"}
# Where a branch on a kind's name belongs: the kinds themselves and the profile that names
# them; grader/scoring.py is copied as the exported Codabench scoring program (numpy only,
# no subkit to ask) and dispatches on its TaskSpec's output kind itself.
KIND_BRANCH_ALLOWED = ("subkit.kinds", "subkit.profile", "subkit.grader.scoring")


def _names_a_kind(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in KIND_ATTRS
    if isinstance(node, ast.Name):
        return node.id in KIND_ATTRS
    return isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
        and node.slice.value in KIND_ATTRS


def _kind_constants(node: ast.AST) -> set[str]:
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)}


def _kind_branches(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        if any(_names_a_kind(s) for s in sides) and any(
                _kind_constants(s) & KIND_NAMES for s in sides):
            found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_nothing_outside_the_kinds_branches_on_a_kind_name():
    """`prof.kind == "forecasting"` and the like live in subkit.kinds: the rest of the tree
    asks the profile's kind object (Profile.kind_spec)."""
    offenders = []
    for p in sorted(SRC.rglob("*.py")):
        name = _module_name(p)
        if name.startswith(STANDALONE + KIND_BRANCH_ALLOWED):
            continue
        offenders += _kind_branches(p)
    assert offenders == []


def test_the_kind_rule_sees_a_branch():
    text = ('if prof.kind == "forecasting" or p.output_kind in ("masks",):\n    pass\n'
            'kind = prof.kind\nif kind != "segmentation":\n    pass\n')
    assert sorted(_kind_branches_text(text)) == ["kind != 'segmentation'",
                                                 "p.output_kind in ('masks',)",
                                                 "prof.kind == 'forecasting'"]
    assert _kind_branches_text('if x.dtype.kind == "f" or info.kind == "keras":\n    pass\n') \
        == []


def _kind_branches_text(text: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_names_a_kind(s) for s in sides) and any(
                    _kind_constants(s) & KIND_NAMES for s in sides):
                out.append(ast.unparse(node))
    return out


def test_every_kind_module_is_found():
    """Adding a kind is one module under subkit/kinds/ (with its KIND) and one profile."""
    import importlib

    kinds = importlib.import_module("subkit.kinds")
    mods = {p.stem for p in (SRC / "kinds").glob("*.py")
            if "KIND = " in p.read_text(encoding="utf-8")}
    assert {type(k).__module__.rpartition(".")[2] for k in kinds.all_kinds().values()} == mods
    assert set(kinds.all_kinds()) == {"classification", "series-classification", "forecasting",
                                      "segmentation"}
