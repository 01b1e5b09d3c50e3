"""The package's import rules, read from the source with ast (nothing is imported): only the backend knows
CuPy, and imports run one way, down cli -> run/session -> train/data/build -> graph -> layers/ops -> backend
(docs: ../shared/DESIGN.md, "Imports run one way")."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "nnctl"
GPU_MODULES = {"cupy", "cupyx"}

# the floors above the layers: a layer or kernel importing one of these reaches up
ABOVE_LAYERS = (
    "nnctl.cli",
    "nnctl.run",
    "nnctl.session",
    "nnctl.resume",
    "nnctl.inference",
    "nnctl.spec",
    "nnctl.build",
    "nnctl.train",
    "nnctl.distributed",
    "nnctl.data",
    "nnctl.checkpoint",
    "nnctl.graph",
    "nnctl.starter",
    "nnctl.plots",
    "nnctl.runlog",
    "nnctl.tensorboard",
    "nnctl.callbacks",
    "nnctl.assemble",
    "nnctl.scoring",
    "nnctl.strategy",
)

# known upward imports still to remove (issue 20); an entry that no longer exists fails, so the list only shrinks
LIBRARY_TO_CLI_EXEMPT = {"nnctl/plots.py": {"nnctl.cli.output"}}


def sources() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: pathlib.Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def module_of(path: pathlib.Path, package: pathlib.Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path, package: pathlib.Path = PACKAGE) -> set[str]:
    """Every module the file imports, at any depth (lazy imports too), as absolute names.

    ``from a import b`` counts as ``a`` and ``a.b`` (b may be a submodule); relative imports are resolved.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_of(path, package)
    here = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return out


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def gpu_mentions(source: str) -> list[tuple[int, str]]:
    """(line, text) for each use of CuPy in code: an import, a name or attribute, a string naming the module.

    Comments and prose (docstrings that say "CuPy") are not uses; ``"cupy"`` or ``"cupy.cuda"`` as a string is
    (``import_module``, ``find_spec``, ``sys.modules``).
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, ast.alias) and node.asname:
            names = [node.asname]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[\w.]+", node.value):
            names = [node.value]
        found += [(getattr(node, "lineno", 0), n) for n in names if n.split(".")[0] in GPU_MODULES]
    return found


# -- the detectors find what they should ---------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    [
        "import cupy",
        "import cupyx.scipy.sparse",
        "from cupy.cuda import nccl",
        "from cupyx import scatter_add",
        "import numpy as np, cupy as cp",
        "cupy = B.xp",
        "stream = B.xp.cupy.cuda",
        "def f(cupy):\n    pass",
        "import importlib\nimportlib.import_module('cupy')",
        "sys.modules.get('cupy.cuda')",
        "def f():\n    from cupy.cuda import nccl\n    return nccl",
    ],
)
def test_gpu_mention_detector_finds_uses(source):
    assert gpu_mentions(source)


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np  # cupy would go here",
        '"""Runs on NumPy or CuPy (see backend)."""',
        "x = 'a cupy array'",
        "from nnctl import backend as B\nxp = B.xp",
    ],
)
def test_gpu_mention_detector_ignores_prose(source):
    assert gpu_mentions(source) == []


def test_import_reader_resolves_lazy_relative_and_from_imports(tmp_path):
    pkg = tmp_path / "nnctl" / "layers"
    pkg.mkdir(parents=True)
    path = pkg / "x.py"
    path.write_text("from nnctl import run\nfrom . import base\ndef f():\n    from ..cli.output import fmt\n")
    found = imports(path, tmp_path / "nnctl")
    assert {"nnctl.run", "nnctl.layers.base", "nnctl.cli.output", "nnctl.cli.output.fmt"} <= found
    assert within("nnctl.cli.output", ABOVE_LAYERS) and not within("nnctl.runlogs", ["nnctl.run"])


# -- the rules -----------------------------------------------------------------------------------------
def test_only_the_backend_uses_cupy():
    offenders = {}
    for path in sources():
        if rel(path) == "nnctl/backend.py" or rel(path).startswith("nnctl/backend/"):
            continue
        found = gpu_mentions(path.read_text(encoding="utf-8"))
        if found:
            offenders[rel(path)] = found
    assert not offenders, f"CuPy outside nnctl/backend.py (move it behind a backend function): {offenders}"


@pytest.mark.parametrize("room", ["layers", "ops"])
def test_layers_and_ops_import_nothing_above_them(room):
    offenders = {
        rel(p): sorted(n for n in imports(p) if within(n, ABOVE_LAYERS)) for p in sorted((PACKAGE / room).rglob("*.py"))
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_ops_do_not_import_layers():
    offenders = {
        rel(p): sorted(n for n in imports(p) if within(n, ["nnctl.layers"]))
        for p in sorted((PACKAGE / "ops").rglob("*.py"))
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_backend_imports_only_errors_from_nnctl():
    path = PACKAGE / "backend.py"
    assert {n for n in imports(path) if within(n, ["nnctl"])} <= {"nnctl.errors", "nnctl.errors.BackendError"}


def test_the_library_does_not_import_the_cli():
    offenders = {}
    for path in sources():
        if rel(path).startswith("nnctl/cli/") or rel(path) == "nnctl/__main__.py":
            continue
        upward = {n for n in imports(path) if within(n, ["nnctl.cli"])}
        exempt = LIBRARY_TO_CLI_EXEMPT.get(rel(path), set())
        if exempt - upward:
            pytest.fail(f"{rel(path)} no longer imports {sorted(exempt - upward)}: take it off LIBRARY_TO_CLI_EXEMPT")
        upward = {n for n in upward if not within(n, exempt)}
        if upward:
            offenders[rel(path)] = sorted(upward)
    assert not offenders, f"library modules import the CLI (pass the value in instead): {offenders}"
