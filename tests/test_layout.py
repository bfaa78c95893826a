"""The package layout: no import cycles, no function-local imports of the package, arrows between layers that point
one way, and files of a readable size (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ultralytics"
MAX_LINES = 500

# Lowest first; a module may import its own layer and the layers below. The longest matching prefix decides.
LAYERS: list[tuple[str, ...]] = [
    ("ultralytics.errors", "ultralytics.version"),
    ("ultralytics.utils",),
    ("ultralytics.cfg",),
    ("ultralytics.detection",),
    ("ultralytics.nn",),
    ("ultralytics.checkpoints",),
    ("ultralytics.nn.autobackend",),  # runs checkpoints and exported files; lives at the published import path
    ("ultralytics.evaluation",),
    ("ultralytics.data",),
    ("ultralytics.trackers",),
    ("ultralytics.engine",),
    ("ultralytics.models",),
    ("ultralytics.cli", "ultralytics.__main__"),
]
# Compatibility re-exports at published import paths: allowed to reach up, but nothing inside the package may
# import them (package code imports the real homes).
FACADES = ("ultralytics.utils.benchmarks",)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(node: ast.ImportFrom | ast.Import, mod: str, is_pkg: bool) -> list[str]:
    """The package modules an import statement names (a `from pkg import submodule` names the submodule)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "ultralytics"]
    base = node.module or ""
    if node.level:
        pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
        pkg = pkg[: len(pkg) - node.level + 1]
        base = ".".join(pkg + ([node.module] if node.module else []))
    if base.split(".")[0] != "ultralytics":
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(mod: str) -> tuple[set[str], list[str]]:
    """(package modules imported at module level, descriptions of package imports inside functions/classes)."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    local: list[str] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = _resolve(child, mod, path.name == "__init__.py")
                if nested and names:
                    local.append(f"{path.name}:{child.lineno} {ast.unparse(child)}")
                elif not nested:
                    top.update(names)
            visit(child, nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))

    visit(tree, False)
    return top, local


GRAPH = {mod: imports_of(mod)[0] for mod in MODULES}


def layer_of(mod: str) -> int:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    if mod == "ultralytics":
        return len(LAYERS)
    assert rank is not None, f"{mod} is in no layer of tests/test_layout.py"
    return rank


def test_no_function_local_package_imports():
    local = [line for mod in MODULES for line in imports_of(mod)[1]]
    assert not local, "imports of the package inside functions/classes:\n" + "\n".join(local)


def test_import_graph_has_no_cycles():
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH.get(m, ())):
            if n not in GRAPH:
                continue
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_point_one_way():
    wrong = [f"{m} (layer {layer_of(m)}) imports {n} (layer {layer_of(n)})"
             for m, targets in GRAPH.items() if m not in FACADES for n in targets
             if n in GRAPH and n not in FACADES and layer_of(n) > layer_of(m)]
    assert not wrong, "\n".join(wrong)


def test_package_code_does_not_import_compatibility_facades():
    users = [f"{m} imports {n}" for m, targets in GRAPH.items() for n in targets if n in FACADES and m not in FACADES]
    assert not users, "\n".join(users)


def test_files_are_readable_size():
    big = {mod: n for mod, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"files over {MAX_LINES} lines: {big}"


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported first (a cycle shows up as an ImportError only when its member is imported first),
    then all of them in three shuffled orders. Third-party packages are loaded once, then each try forks."""
    script = textwrap.dedent(f"""
        import os, random, sys, traceback
        import cv2, numpy, torch, torchvision, yaml  # noqa: the slow imports, shared by the forks
        modules = {sorted(MODULES)!r}
        orders = [[m] for m in modules]
        for seed in range(3):
            order = modules[:]
            random.Random(seed).shuffle(order)
            orders.append(order)
        failed = []
        for order in orders:
            pid = os.fork()
            if pid == 0:
                try:
                    for m in order:
                        __import__(m)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                failed.append(order[0] if len(order) == 1 else f"shuffled order starting {{order[:3]}}")
        print("FAILED:", failed)
        sys.exit(1 if failed else 0)
    """)
    if not hasattr(__import__("os"), "fork"):
        pytest.skip("needs os.fork")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_published_import_paths():
    """The import paths users of the published package type keep working."""
    from ultralytics.engine.model import YOLO
    from ultralytics.engine.predictor import DetectionPredictor
    from ultralytics.engine.trainer import DetectionTrainer
    from ultralytics.engine.validator import DetectionValidator
    from ultralytics.models.yolo import detect
    from ultralytics.nn.modules import BiLevelRoutingAttention, C2f, Detect  # noqa: F401
    from ultralytics.nn.tasks import DetectionModel, parse_model  # noqa: F401
    from ultralytics.utils.ops import non_max_suppression, scale_boxes, xywh2xyxy  # noqa: F401
    from ultralytics.data import YOLODataset, build_dataloader  # noqa: F401

    import ultralytics
    import ultralytics.models

    assert ultralytics.YOLO is YOLO is ultralytics.models.YOLO
    assert (detect.DetectionTrainer, detect.DetectionValidator, detect.DetectionPredictor) == (
        DetectionTrainer, DetectionValidator, DetectionPredictor)
