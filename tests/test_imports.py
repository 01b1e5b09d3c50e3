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

# known upward imports still to remove; an entry that no longer exists fails, so the list only shrinks (issue 20
# emptied it: plots takes its number formatting from nnctl.numfmt)
LIBRARY_TO_CLI_EXEMPT: dict[str, set[str]] = {}

# the floors of the one direction, lowest first: a module on a floor imports nothing from a higher floor (lazy
# imports included); modules between the named rooms (assemble, spec, losses, ...) are not placed on a floor
FLOORS = (
    ("nnctl.backend", "nnctl.threads"),  # the slice pool knows only the backend: layers and the graph hold it
    ("nnctl.layers", "nnctl.ops", "nnctl.kernels"),
    ("nnctl.graph",),
    ("nnctl.train", "nnctl.data", "nnctl.build"),
    ("nnctl.assemble",),  # the spec's model for a dataset: the data layer learns output shapes from build itself
    ("nnctl.resume", "nnctl.inference"),
    ("nnctl.run", "nnctl.session", "nnctl.session_base", "nnctl.gan"),
    ("nnctl.cli",),
)


def sources() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: pathlib.Path, package: pathlib.Path = PACKAGE) -> str:
    return path.relative_to(package.parent).as_posix()


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


# -- the rules, as functions of a package folder (so each can be shown to fail on a package that breaks it) --
def floor_of(name: str) -> int | None:
    return next((i for i, prefixes in enumerate(FLOORS) if within(name, prefixes)), None)


def upward_imports(package: pathlib.Path = PACKAGE) -> dict[str, list[str]]:
    """{file: the modules it imports from a higher floor} for every file on a floor."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        here = floor_of(module_of(path, package))
        if here is None:
            continue
        up = sorted(n for n in imports(path, package) if (floor_of(n) or 0) > here)
        if up:
            out[rel(path, package)] = up
    return out


def reaching(package: pathlib.Path, room: str, targets) -> dict[str, list[str]]:
    """{file of nnctl/<room>: the modules it imports that lie within ``targets``}."""
    found = {
        rel(p, package): sorted(n for n in imports(p, package) if within(n, targets))
        for p in sorted((package / room).rglob("*.py"))
    }
    return {k: v for k, v in found.items() if v}


def cli_imports(package: pathlib.Path = PACKAGE, exempt: dict | None = None) -> dict[str, list[str]]:
    """{library file: the nnctl.cli modules it imports}, less the exempt ones; a stale exemption is an offence too."""
    exempt = LIBRARY_TO_CLI_EXEMPT if exempt is None else exempt
    offenders = {}
    for path in sorted(package.rglob("*.py")):
        name = rel(path, package)
        if name.startswith("nnctl/cli/") or name == "nnctl/__main__.py":
            continue
        upward = {n for n in imports(path, package) if within(n, ["nnctl.cli"])}
        allowed = exempt.get(name, set())
        if allowed - upward:
            offenders[name] = [f"stale exemption: {sorted(allowed - upward)}"]
        elif {n for n in upward if not within(n, allowed)}:
            offenders[name] = sorted(n for n in upward if not within(n, allowed))
    return offenders


def test_only_the_backend_uses_cupy():
    offenders = {}
    for path in sources():
        if rel(path) == "nnctl/backend.py" or rel(path).startswith("nnctl/backend/"):
            continue
        found = gpu_mentions(path.read_text(encoding="utf-8"))
        if found:
            offenders[rel(path)] = found
    assert not offenders, f"CuPy outside nnctl/backend.py (move it behind a backend function): {offenders}"


@pytest.mark.parametrize("room", ["layers", "ops", "kernels"])
def test_layers_ops_and_kernels_import_nothing_above_them(room):
    assert not reaching(PACKAGE, room, ABOVE_LAYERS)


@pytest.mark.parametrize("room", ["ops", "kernels"])
def test_ops_and_kernels_do_not_import_layers(room):
    assert not reaching(PACKAGE, room, ["nnctl.layers"])


def test_backend_imports_only_errors_from_nnctl():
    path = PACKAGE / "backend.py"
    assert {n for n in imports(path) if within(n, ["nnctl"])} <= {"nnctl.errors", "nnctl.errors.BackendError"}


def test_the_library_does_not_import_the_cli():
    offenders = cli_imports()
    assert not offenders, f"library modules import the CLI (pass the value in instead): {offenders}"


def test_imports_run_one_way_down_the_floors():
    offenders = upward_imports()
    assert not offenders, (
        f"imports against cli -> run/session -> train/data/build -> graph -> layers -> backend: {offenders}"
    )


# -- each rule fails on a package that breaks it -------------------------------------------------------
def _package(tmp_path, files: dict[str, str]) -> pathlib.Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "nnctl"


def test_the_floor_rule_finds_an_upward_import(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "nnctl/graph.py": "from nnctl import backend\nfrom nnctl.layers import core\n",
            "nnctl/train.py": "def f():\n    from nnctl.session import Session\n",  # lazy: still upward
            "nnctl/layers/core.py": "from nnctl.graph import Model\n",
            "nnctl/data/x.py": "from nnctl.build import build_model\nfrom nnctl.spec import validate\n",  # same floor; unplaced
        },
    )
    assert upward_imports(pkg) == {
        "nnctl/layers/core.py": ["nnctl.graph", "nnctl.graph.Model"],
        "nnctl/train.py": ["nnctl.session", "nnctl.session.Session"],
    }


def test_the_layer_rules_find_a_reach_up(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "nnctl/kernels/__init__.py": "def f():\n    from nnctl.layers.base import Layer\n",
            "nnctl/ops/im2col.py": "from nnctl.train import Trainer\n",
            "nnctl/layers/conv.py": "from ..ops import im2col\nfrom ..data import load_dataset\n",
        },
    )
    assert reaching(pkg, "kernels", ["nnctl.layers"]) == {
        "nnctl/kernels/__init__.py": ["nnctl.layers.base", "nnctl.layers.base.Layer"]
    }
    assert reaching(pkg, "ops", ABOVE_LAYERS) == {"nnctl/ops/im2col.py": ["nnctl.train", "nnctl.train.Trainer"]}
    assert reaching(pkg, "layers", ABOVE_LAYERS) == {"nnctl/layers/conv.py": ["nnctl.data", "nnctl.data.load_dataset"]}


def test_the_cli_rule_finds_a_library_import_of_the_cli_and_a_stale_exemption(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "nnctl/plots.py": "def label(v):\n    from nnctl.cli.output import fmt\n    return fmt(v)\n",
            "nnctl/cli/main.py": "from nnctl import plots\n",  # the CLI may import the library
            "nnctl/report.py": "import numpy\n",
        },
    )
    assert cli_imports(pkg, {}) == {"nnctl/plots.py": ["nnctl.cli.output", "nnctl.cli.output.fmt"]}
    assert cli_imports(pkg, {"nnctl/plots.py": {"nnctl.cli.output"}}) == {}
    assert cli_imports(pkg, {"nnctl/report.py": {"nnctl.cli.output"}}) == {
        "nnctl/plots.py": ["nnctl.cli.output", "nnctl.cli.output.fmt"],
        "nnctl/report.py": ["stale exemption: ['nnctl.cli.output']"],
    }
