"""Imports run one way (docs/architecture.md): the package's import graph has no cycle, and
every module imports on its own in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "keras_attn_zoo"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


def _module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imports(name, path):
    """The package modules that ``name`` imports, anywhere in its file (inside functions too).

    ``from a.b import c`` imports the module ``a.b.c`` when there is one, else ``a.b`` (for a
    package, its ``__init__``). A package's ``__init__`` that re-exports its modules is not an
    edge back from them: Python runs it first, but a module of the package can import another
    while it runs, and the fresh-interpreter test below checks that they do.
    """
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets += [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                        for alias in node.names]
    found = set()
    for target in targets:
        if target != PACKAGE and not target.startswith(PACKAGE + "."):
            continue  # a third-party or standard module
        while target not in MODULES:  # `import a.b.c` where c is a name in a.b
            target = target.rpartition(".")[0]
        found.add(target)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_reads_the_known_edges():
    assert "keras_attn_zoo.weights" in GRAPH["keras_attn_zoo.registry"]
    assert "keras_attn_zoo.layers" in GRAPH["keras_attn_zoo.models.common"]
    assert "keras_attn_zoo.data" in GRAPH["keras_attn_zoo.training.evaluate"]  # the package


def test_the_import_graph_has_no_cycle():
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


_FRESH_IMPORTS = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "keras_attn_zoo" or m.startswith("keras_attn_zoo.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {type(e).__name__}: {e}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_module_imports_first_in_a_fresh_interpreter():
    """Each module imported first, with none of the package loaded: one interpreter that forgets
    the package between modules (third-party modules such as keras stay loaded, which no cycle
    of ours depends on). ``--run-slow`` also starts one interpreter per module."""
    result = subprocess.run([sys.executable, "-c", _FRESH_IMPORTS, *sorted(MODULES)],
                            capture_output=True, text=True, cwd=ROOT.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_imports_in_its_own_fresh_interpreter(name):
    result = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                            cwd=ROOT.parent)
    assert result.returncode == 0, result.stderr[-2000:]
