"""The import graph, read from the source with `ast`: every import resolves, and imports run one way.

`test_imports.py` imports every module, but about 190 imports sit inside functions and only run when the
function does; these tests read all of them. The layers (docs/architecture.md):

    foundation (errors, console, yamlio, stats, chat, losses, config) -> data -> lm (model runtime)
      -> stages (audit, label, pairs, train, eval, gate, registry, diagnose, sweep) -> report
      -> demo, commands, cli

A module may import its own layer or a lower one, never a higher one; within a layer, no two top-level
units may import each other (directly or through a cycle).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

import prefgate

SRC = Path(prefgate.__file__).resolve().parent

LAYERS = {
    "__init__": 0, "errors": 0, "console": 0, "yamlio": 0, "stats": 0, "chat": 0, "losses": 0, "config": 0,
    "tiny": 0, "reportio": 0, "jsonio": 0, "hub": 0, "trlconfig": 0,
    "data": 1,
    "lm": 2,
    "audit": 3, "label": 3, "pairs": 3, "train": 3, "eval": 3, "gate": 3, "registry": 3, "diagnose": 3,
    "sweep": 3,
    "report": 4,
    "demo": 5, "commands": 5, "cli": 5, "__main__": 5,
}

# Third-party packages imported only where an optional feature needs them (each import is guarded).
OPTIONAL = {"bitsandbytes", "lm_eval", "liger_kernel", "mlflow", "tensorboard", "wandb", "deepspeed"}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module that is imported from
    names: tuple[str, ...]  # names imported from it (empty for `import x`)
    line: int


def module_name(path: Path) -> str:
    parts = ("prefgate", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[Import]:
    """Every import statement of a module, at any depth (module level, functions, methods, try blocks)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [Import(name, alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            out.append(Import(name, target, tuple(a.name for a in node.names), node.lineno))
    return out


ALL_IMPORTS = [imp for path in sorted(SRC.rglob("*.py")) for imp in imports_of(path)]


def unit(module: str) -> str:
    """The top-level unit of a prefgate module: `prefgate.train.loop` -> `train`, `prefgate` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_graph_reads_function_level_imports_too():
    inner = [i for i in ALL_IMPORTS if i.target.startswith("prefgate")]
    assert len(ALL_IMPORTS) > 500 and len(inner) > 200
    # one known import inside a function body: the trainer's audit gate
    assert any(i.importer == "prefgate.train.loop" and i.target == "prefgate.audit" for i in inner)


def test_every_import_resolves():
    """Each prefgate import names an existing module and attribute; each third-party package is installed."""
    problems = []
    for imp in ALL_IMPORTS:
        where = f"{imp.importer}:{imp.line}"
        top = imp.target.split(".")[0]
        if top == "__future__":
            continue
        if top != "prefgate":
            if top not in OPTIONAL and importlib.util.find_spec(top) is None:
                problems.append(f"{where}: package {top!r} is not installed")
            continue
        try:
            module = importlib.import_module(imp.target)
        except ImportError as err:
            problems.append(f"{where}: cannot import {imp.target}: {err}")
            continue
        for name in imp.names:
            if name != "*" and not hasattr(module, name) and importlib.util.find_spec(
                    f"{imp.target}.{name}") is None:
                problems.append(f"{where}: {imp.target} has no {name!r}")
    assert not problems, "\n".join(problems)


def test_only_the_cli_imports_commands():
    offenders = [f"{i.importer}:{i.line}" for i in ALL_IMPORTS if i.target.startswith("prefgate.commands")
                 and unit(i.importer) not in ("commands", "cli")]
    assert not offenders, f"library code imports prefgate.commands: {offenders}"


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in ALL_IMPORTS:
        targets = [imp.target]
        if imp.target == "prefgate":  # `from prefgate import x`: x is a subpackage or a name of __init__
            targets = [f"prefgate.{n}" if importlib.util.find_spec(f"prefgate.{n}") else "prefgate" for n in imp.names]
        for target in targets:
            if target.startswith("prefgate") and unit(target) != unit(imp.importer):
                graph[unit(imp.importer)].add(unit(target))
    return graph


def test_every_unit_has_a_layer():
    units = {unit(module_name(p)) for p in SRC.rglob("*.py")}
    assert units <= set(LAYERS), f"give these a layer in LAYERS (and docs/architecture.md): {units - set(LAYERS)}"


def test_imports_never_go_up_a_layer():
    upward = sorted(f"{a} ({LAYERS[a]}) -> {b} ({LAYERS[b]})" for a, targets in unit_graph().items()
                    for b in targets if LAYERS[b] > LAYERS[a])
    assert not upward, f"imports that go up a layer: {upward}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_top_level_units():
    cycle = find_cycle(unit_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("graph, has_cycle", [
    ({"a": {"b"}, "b": {"c"}}, False),
    ({"a": {"b"}, "b": {"a"}}, True),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
])
def test_find_cycle_finds_planted_cycles(graph, has_cycle):
    assert (find_cycle(graph) is not None) == has_cycle
