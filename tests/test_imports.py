"""The package's import graph: every module imports in a fresh interpreter, and no module imports
itself back through others — counting imports inside functions too, since a lazy import that
closes a cycle is the same design knot (it only moves the failure to run time)."""

import ast
import subprocess
import sys
from pathlib import Path

import focalstack

PKG = Path(focalstack.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    """module → the focalstack modules it imports anywhere in its source (AST, relative imports resolved)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    deps.add(full if full in mods else base)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_find_cycle_detects_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "focalstack.inference.network" in graph and graph["focalstack.inference.network"]
    cycle = find_cycle(graph)
    assert cycle is None, " → ".join(cycle)


def test_every_module_imports_in_a_fresh_interpreter():
    code = (
        "import importlib, pkgutil, focalstack\n"
        "bad = []\n"
        "for m in pkgutil.walk_packages(focalstack.__path__, 'focalstack.'):\n"
        "    try:\n"
        "        importlib.import_module(m.name)\n"
        "    except ImportError as e:\n"
        "        if m.name.endswith('triton_gpu') and 'triton' in str(e):\n"
        "            continue  # optional GPU extra\n"
        "        bad.append(f'{m.name}: {e!r}')\n"
        "    except Exception as e:\n"
        "        bad.append(f'{m.name}: {e!r}')\n"
        "print('\\n'.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "", r.stdout


def test_readme_layout_table_matches_the_tree():
    """The README's "The pipeline and the layout" table names only modules that exist, and every
    top-level package and module of focalstack."""
    import re
    section = (PKG.parents[1] / "README.md").read_text().split("## The pipeline and the layout")[1].split("\n## ")[0]
    named = set(re.findall(r"`((?:focalstack\.)?[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)`", section))
    mods = _modules()
    missing = sorted(n for n in named if (n if n.startswith("focalstack.") else f"focalstack.{n}") not in mods)
    assert not missing, f"named in the README but not in the tree: {missing}"
    top = {n for n in mods if n.count(".") == 1 and n != "focalstack.__main__"}
    assert top - named == set(), f"not in the README's layout table: {sorted(top - named)}"
