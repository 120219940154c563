"""Which ``mer_core`` modules a notebook or a module uses, directly or through other modules.

DVC reruns a stage only when one of its declared ``deps`` changes, so every stage must list each
module its notebook imports and each module those import in turn. This module derives that set
from the source (every ``import`` statement, also those inside functions), so a test can hold
``dvc.yaml`` to it and :func:`mer_core.fingerprints.code_version` can hash exactly the modules the
train stage depends on.
"""
from __future__ import annotations

import ast
import json
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from mer_core import io

PACKAGE = "mer_core"
PACKAGE_DIR = Path(__file__).resolve().parent


def imported(source: str, where: str = "<source>") -> set[str]:
    """``mer_core`` modules named by the import statements of ``source``.

    ``from mer_core import a, b`` -> {a, b}; ``import mer_core.a`` / ``from mer_core.a import x``
    -> {a}; relative imports (``from . import a``, ``from .a import x``) inside the package too.

    Raises:
        SyntaxError: ``source`` does not parse (the message names ``where``).
    """
    tree = ast.parse(source, filename=where)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    names.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".") if node.module else []
            if node.level == 0 and (not parts or parts[0] != PACKAGE):
                continue
            if node.level > 0 or parts[0] == PACKAGE:
                sub = parts[1:] if node.level == 0 else parts
                if sub:
                    names.add(sub[0])
                else:
                    names.update(alias.name for alias in node.names)
    return {n for n in names if (PACKAGE_DIR / f"{n}.py").is_file()}


@lru_cache(maxsize=None)
def _module_imports(name: str) -> frozenset[str]:
    path = PACKAGE_DIR / f"{name}.py"
    return frozenset(imported(path.read_text(), str(path)) - {name})


def closure(modules: Iterable[str]) -> list[str]:
    """``modules`` and every ``mer_core`` module they import, transitively, sorted."""
    todo, seen = list(modules), set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        if not (PACKAGE_DIR / f"{m}.py").is_file():
            raise ValueError(f"{PACKAGE}.{m}: no such module ({PACKAGE_DIR / m}.py)")
        seen.add(m)
        todo.extend(_module_imports(m) - seen)
    return sorted(seen)


def notebook_imports(path: str | Path) -> set[str]:
    """``mer_core`` modules the code cells of a notebook import (IPython magics skipped)."""
    path = Path(path)
    nb = json.loads(path.read_text())
    names: set[str] = set()
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell.get("source", []))
        src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
        names |= imported(src, f"{path} cell {i}")
    return names


def notebook_modules(path: str | Path) -> list[str]:
    """Every module a notebook depends on: its imports and theirs (see :func:`closure`)."""
    return closure(notebook_imports(path))


def module_files(modules: Iterable[str]) -> list[str]:
    """``mer_core/<name>.py`` paths, as ``dvc.yaml`` lists them."""
    return [f"{PACKAGE}/{m}.py" for m in sorted(modules)]


def sync_dvc_yaml(path: str | Path = "dvc.yaml", root: str | Path = ".") -> list[str]:
    """Rewrite the ``mer_core/*.py`` deps of every stage of ``dvc.yaml`` from its notebook's
    imports (the list that follows the stage's ``- notebooks/<nb>.ipynb`` dep); the rest of the
    file, comments included, is kept as it is.

    Returns:
        The stages whose deps changed.
    """
    path, root = Path(path), Path(root)
    lines = path.read_text().splitlines(keepends=True)
    out, changed, i = [], [], 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        item = line.strip()
        i += 1
        if not (item.startswith("- notebooks/") and item.endswith(".ipynb")):
            continue
        indent = line[:len(line) - len(line.lstrip())]
        old = []
        while i < len(lines) and lines[i].strip().startswith(f"- {PACKAGE}/"):
            old.append(lines[i].strip()[2:])
            i += 1
        new = module_files(notebook_modules(root / item[2:]))
        out += [f"{indent}- {f}\n" for f in new]
        if new != old:
            changed.append(item[2:])
    if changed:
        io.write_text(path, "".join(out))
    return changed


if __name__ == "__main__":  # python -m mer_core.deps: bring dvc.yaml's code deps up to date
    for nb in sync_dvc_yaml():
        print(f"dvc.yaml: updated the mer_core deps of the stage running {nb}")


__all__ = ["imported", "closure", "notebook_imports", "notebook_modules", "module_files",
           "sync_dvc_yaml"]
