"""The ``[tune]`` section: a search space over dotted spec paths, its checks, and the samples drawn from it.

A path is what ``--set`` takes (``train.optimizer.learning_rate``, ``model.layers[0].units``), applied to
the spec as written (before blocks are expanded). Each parameter is one of
``log_uniform = [lo, hi]`` (lo > 0; x = exp(U(ln lo, ln hi))), ``uniform = [lo, hi]`` (x = U(lo, hi)),
``int = [lo, hi]`` (an integer in lo..hi, both ends included; ``log = true`` draws it log-uniformly) or
``choice = [v1, v2, ...]`` (any spec values). The space is checked against the spec itself: each path with
each end of its range (or each choice) set must give a valid spec, so ``units = { int = [0, 8] }`` is
refused with the spec's own message for ``units = 0``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnctl import metrics
from nnctl.errors import SpecError
from nnctl.fields import check_keys, fields_of
from nnctl.spec import validate
from nnctl.spec_model import Spec
from nnctl.spec_sections import TuneParam, TuneSection

KINDS = ("log_uniform", "uniform", "int", "choice")
DEFAULT_TRIALS = 20


@dataclass(frozen=True)
class Param:
    """One searched spec path: its kind, bounds (ranges) or values (choice), and its grid points."""

    path: str
    kind: str
    lo: float = 0.0
    hi: float = 0.0
    values: tuple = ()
    log: bool = False
    grid: int | None = None

    def sample(self, rng: np.random.Generator):
        if self.kind == "choice":
            return copy.deepcopy(self.values[int(rng.integers(len(self.values)))])
        if self.kind == "uniform":
            return float(rng.uniform(self.lo, self.hi))
        if self.kind == "log_uniform":
            return float(min(max(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))), self.lo), self.hi))
        if self.log:  # log-uniform over [lo, hi + 1), floored: each integer weighted by its log width
            return int(min(math.floor(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi + 1)))), self.hi))
        return int(rng.integers(int(self.lo), int(self.hi) + 1))

    def points(self) -> list:
        """The grid values of this parameter (choices, every integer, or ``grid`` evenly spaced points)."""
        if self.kind == "choice":
            return [copy.deepcopy(v) for v in self.values]
        if self.kind == "int":
            if self.grid is None:
                return list(range(int(self.lo), int(self.hi) + 1))
            spaced = np.geomspace(self.lo, self.hi, self.grid) if self.log else np.linspace(self.lo, self.hi, self.grid)
            return list(dict.fromkeys(int(round(v)) for v in spaced))
        assert self.grid is not None  # checked with the space
        if self.kind == "log_uniform":
            return [float(v) for v in np.geomspace(self.lo, self.hi, self.grid)]
        return [float(v) for v in np.linspace(self.lo, self.hi, self.grid)]

    def describe(self) -> str:
        if self.kind == "choice":
            return "choice of " + ", ".join(json.dumps(v) for v in self.values)
        return f"{self.kind}{' log' if self.log else ''} [{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class Settings:
    """The checked ``[tune]`` section."""

    space: tuple[Param, ...]
    objective: str
    higher_is_better: bool
    trials: int
    epochs: int | None
    time_limit: float
    sampler: str
    pruner: str
    startup_trials: int
    seed: int
    parallel: int

    def fingerprint(self) -> dict:
        """What must match for a second ``nnctl tune`` into the same folder to continue the first."""
        return {
            "space": [[p.path, p.kind, p.lo, p.hi, list(p.values), p.log, p.grid] for p in self.space],
            "objective": self.objective,
            "higher_is_better": self.higher_is_better,
            "epochs": self.epochs,
            "sampler": self.sampler,
            "seed": self.seed,
            "pruner": self.pruner,
        }


def grid(space: tuple[Param, ...]) -> list[dict]:
    """Every combination of the parameters' grid points, the first parameter varying slowest."""
    return [dict(zip((p.path for p in space), combo)) for combo in itertools.product(*(p.points() for p in space))]


def random_params(space: tuple[Param, ...], seed: int, index: int) -> dict:
    """Trial ``index``'s parameters, drawn from its own stream: the same whatever order trials finish in."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7, index)))
    return {p.path: p.sample(rng) for p in space}


# -- setting a path -------------------------------------------------------------------------------
def split_path(path: str) -> list:
    """``model.layers[0].units`` -> ["model", "layers", 0, "units"]; SpecError on a malformed path."""
    parts: list = []
    for piece in path.split("."):
        name, bracket, rest = piece.partition("[")
        if not name and not bracket:
            raise SpecError("empty part in the path")
        if name:
            parts.append(name)
        while bracket:
            idx, close, rest = rest.partition("]")
            if not close or not idx.isdigit():
                raise SpecError(f"bad index [{idx}")
            parts.append(int(idx))
            if rest and not rest.startswith("["):
                raise SpecError(f"unexpected {rest!r} after [{idx}]")
            bracket, rest = rest[:1], rest[1:]
    return parts


def set_path(spec: dict, path: str, value: Any) -> None:
    """Set ``path`` in ``spec`` in place, as ``--set path=value`` does (a named optimizer or loss becomes a table)."""
    node: Any = spec
    parts = split_path(path)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = f"{len(node)} entries" if isinstance(node, list) else "no list"
                raise SpecError(f"index [{part}] is out of range ({size} there)")
        elif not isinstance(node, dict):
            raise SpecError(f"{part!r} is not inside a table")
        if last:
            node[part] = copy.deepcopy(value)
            return
        if isinstance(part, str) and isinstance(node.get(part), str) and part in ("optimizer", "loss"):
            node[part] = {"type": node[part]}
        node = node[part] if isinstance(part, int) else node.setdefault(part, {})


def apply(raw: dict, params: dict) -> dict:
    """A copy of the spec as written with each parameter set (the tune section left out)."""
    out = copy.deepcopy({k: v for k, v in raw.items() if k != "tune"})
    for path, value in params.items():
        set_path(out, path, value)
    return out


# -- checking the section -------------------------------------------------------------------------
def _param(path: str, table, where: str) -> tuple[Param | None, list[str]]:
    if not isinstance(table, dict):
        return None, [
            f"{where}: expected a table such as {{ log_uniform = [0.0001, 0.1] }} or "
            f"{{ choice = [32, 64] }}, found {json.dumps(table, default=str)[:40]}"
        ]
    out, problems = check_keys(table, fields_of(TuneParam), where)
    if problems:
        return None, problems
    kinds = [k for k in KINDS if out.get(k) is not None]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        return None, [f"{where}: expected exactly one of {', '.join(KINDS)}, found {found}"]
    kind = kinds[0]
    grid_n = out.get("grid")
    if kind == "choice":
        values = out["choice"]
        if not values:
            return None, [f"{where}.choice: expected at least one value, found []"]
        return Param(path, kind, values=tuple(values), grid=grid_n), []
    bounds = out[kind]
    if len(bounds) != 2:
        return None, [f"{where}.{kind}: expected [lo, hi], found a list of {len(bounds)}"]
    lo, hi = bounds
    if not lo < hi:
        return None, [f"{where}.{kind}: expected lo < hi, found [{lo:g}, {hi:g}]"]
    if (kind == "log_uniform" or out.get("log")) and lo <= 0:
        return None, [f"{where}.{kind}: a log scale needs lo > 0, found [{lo:g}, {hi:g}]"]
    if out.get("log") and kind != "int":
        return None, [f"{where}.log: applies to int ranges only (log_uniform is already log-spaced)"]
    return Param(path, kind, float(lo), float(hi), log=bool(out.get("log")), grid=grid_n), []


def _ends(p: Param) -> list:
    if p.kind == "choice":
        return list(p.values)
    return [int(p.lo), int(p.hi)] if p.kind == "int" else [p.lo, p.hi]


def _against_spec(raw: dict, p: Param, where: str, source: str) -> list[str]:
    """Each end of the range (each choice) set at the path must leave a valid spec; the first problem found."""
    for value in _ends(p):
        candidate = copy.deepcopy({k: v for k, v in raw.items() if k != "tune"})
        try:
            set_path(candidate, p.path, value)
        except SpecError as exc:
            return [f"{where}: the path does not exist in the spec: {exc}"]
        try:
            validate(candidate, source)
        except SpecError as exc:
            lines = getattr(exc, "lines", None) or [str(exc)]
            first = lines[0].removeprefix(f"{source}: ")
            return [f"{where}: {json.dumps(value)} makes the spec invalid: {first}"]
    return []


def problems(raw: dict, spec: dict, source: str) -> list[str]:
    """Every problem of ``raw["tune"]`` (``spec``: the validated spec without it), one line each."""
    table = raw.get("tune")
    if not isinstance(table, dict):
        return []
    try:
        parse(table, spec, raw=raw, source=source)
    except SpecError as exc:
        return [line.removeprefix(f"{source}: ") for line in getattr(exc, "lines", None) or [str(exc)]]
    return []


def _run_facts(spec: dict | Spec) -> tuple[list[str], bool, int]:
    """What the objective is checked against: the logged quantities, whether there is validation data, the seed
    (of a typed Spec, or of the dict the validator is still checking)."""
    if isinstance(spec, Spec):
        return ["loss", *spec.train.metrics], spec.data.validation is not None, spec.seed
    logged = ["loss", *spec["train"].get("metrics", [])]
    return logged, spec["data"].get("validation") is not None, int(spec.get("seed", 0))


def parse(table: dict, spec: dict | Spec, raw: dict | None = None, source: str = "spec") -> Settings:
    """The checked settings of a ``[tune]`` table; ``raw`` (the spec as written) checks the paths against it.

    Raises one SpecError listing every problem, each line prefixed with ``source``."""
    out, found = check_keys(table, fields_of(TuneSection), "tune")
    space: list[Param] = []
    space_table = out.get("space")
    if isinstance(space_table, dict):
        if not space_table:
            found.append("tune.space: expected at least one parameter, found an empty table")
        for path, entry in space_table.items():
            where = f"tune.space.{json.dumps(path)}"
            param, bad = _param(path, entry, where)
            if param is not None and raw is not None:
                bad = _against_spec(raw, param, where, source)
            if (
                param is not None
                and out.get("sampler") == "grid"
                and param.kind in ("uniform", "log_uniform")
                and param.grid is None
            ):
                bad.append(
                    f"{where}.grid: the grid sampler needs the number of points of a {param.kind} range (grid = 4)"
                )
            found += bad
            if param is not None and not bad:
                space.append(param)
    objective = str(out.get("objective", "val_loss"))
    base = objective.removeprefix("val_")
    logged, has_val, spec_seed = _run_facts(spec)
    try:
        base = metrics.METRICS.canonical(base) if base != "loss" else base
    except LookupError:
        pass
    if "objective" not in [f.split(":")[0] for f in found]:
        known = [*logged, *(f"val_{n}" for n in logged if has_val)]
        if base not in logged:
            found.append(
                f"tune.objective: {objective!r} is not logged by this spec; expected one of {', '.join(known)}"
            )
        elif objective.startswith("val_") and not has_val:
            found.append(
                f"tune.objective: {objective!r} needs validation data (data.validation = "
                f"{{ split = 0.2 }}); or use {base!r}"
            )
    objective = f"val_{base}" if objective.startswith("val_") else base
    if found:
        raise SpecError.many(source, found)
    mode = out.get("mode", "auto")
    higher = metrics.higher_is_better(objective) if mode == "auto" else mode == "max"
    sampler = out.get("sampler", "random")
    trials = out.get("trials")
    if trials is None:
        trials = len(grid(tuple(space))) if sampler == "grid" else DEFAULT_TRIALS
    return Settings(
        tuple(space),
        objective,
        bool(higher),
        int(trials),
        out.get("epochs"),
        float(out.get("time_limit", 0.0)),
        sampler,
        out.get("pruner", "none"),
        int(out.get("startup_trials", 5)),
        int(out["seed"]) if out.get("seed") is not None else spec_seed,
        int(out.get("parallel", 1)),
    )
