"""Rooms a newcomer can hold in their head (issue 15): no module over ~500 lines and no class over ~300
without a reason written at the module's top (a paragraph starting `Size:` in its docstring).
Migrations and tests are not counted. `python tests/unit/test_sizes.py` lists the large ones."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "serve_apps", "cluster", "facewatch", "models", "storage", "benchmarks")
MODULE_LINES, CLASS_LINES = 500, 300


def too_big(source: str) -> list[str]:
    """What in `source` is over the limits: 'module: N lines' and 'class X: N lines'."""
    found = []
    lines = source.count("\n")
    if lines > MODULE_LINES:
        found.append(f"module: {lines} lines")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            length = node.end_lineno - node.lineno + 1
            if length > CLASS_LINES:
                found.append(f"class {node.name}: {length} lines")
    return found


def has_reason(source: str) -> bool:
    doc = ast.get_docstring(ast.parse(source)) or ""
    return any(line.startswith("Size:") for line in doc.splitlines())


def large_modules() -> dict[str, tuple[list[str], bool]]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            source = path.read_text(encoding="utf-8")
            found = too_big(source)
            if found:
                out[path.relative_to(ROOT).as_posix()] = (found, has_reason(source))
    return out


def test_the_limits_are_measured() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(CLASS_LINES))
    assert too_big(f"class Big:\n{body}\n") == [f"class Big: {CLASS_LINES + 1} lines"]
    assert too_big("x = 1\n" * (MODULE_LINES + 1)) == [f"module: {MODULE_LINES + 1} lines"]
    assert has_reason('"""Doc.\n\nSize: it is one table list.\n"""\n')
    assert not has_reason('"""Doc about Size: not at a line start."""\n')


def test_large_modules_say_why() -> None:
    unexplained = {path: found for path, (found, reason) in large_modules().items() if not reason}
    assert not unexplained, f"split these along concepts, or write a 'Size:' paragraph at the top: {unexplained}"


if __name__ == "__main__":
    for path, (found, reason) in large_modules().items():
        print(f"{path}: {', '.join(found)}{'' if reason else '  (no reason given)'}")
