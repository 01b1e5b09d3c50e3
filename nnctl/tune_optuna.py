"""The ``tpe`` sampler of ``nnctl tune`` through Optuna (the optional extra ``nnctl[tune]``), imported only for it.

The study lives in memory: a continued search re-adds the finished trials from ``tune.json``. A choice
parameter is an index into its values (Optuna's categorical values must be plain scalars).
"""

from __future__ import annotations

import json

from nnctl.errors import SpecError
from nnctl.tune_space import Param, Settings


def _optuna():
    try:
        import optuna
    except ImportError:
        raise SpecError(
            "tune.sampler: 'tpe' needs optuna (pip install nnctl[tune]); or use 'random' or 'grid'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _distribution(p: Param):
    d = _optuna().distributions
    if p.kind == "choice":
        return d.CategoricalDistribution(list(range(len(p.values))))
    if p.kind == "int":
        return d.IntDistribution(int(p.lo), int(p.hi), log=p.log)
    return d.FloatDistribution(p.lo, p.hi, log=p.kind == "log_uniform")


def _internal(p: Param, value):
    if p.kind != "choice":
        return value

    wanted = json.dumps(value, sort_keys=True)
    return next(i for i, v in enumerate(p.values) if json.dumps(v, sort_keys=True) == wanted)


def study(settings: Settings, finished: list[dict]):
    """A TPE study seeded from ``settings.seed`` holding the trials already finished."""
    optuna = _optuna()
    sampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=max(settings.startup_trials, 1))
    s = optuna.create_study(direction="maximize" if settings.higher_is_better else "minimize", sampler=sampler)
    dists = {p.path: _distribution(p) for p in settings.space}
    for t in sorted(finished, key=lambda t: t["trial"]):
        value = t.get("objective")
        ok = t["status"] == "done" and isinstance(value, float)
        state = (
            optuna.trial.TrialState.COMPLETE
            if ok
            else (optuna.trial.TrialState.PRUNED if t["status"] == "pruned" else optuna.trial.TrialState.FAIL)
        )
        s.add_trial(
            optuna.trial.create_trial(
                params={p.path: _internal(p, t["params"][p.path]) for p in settings.space},
                distributions=dists,
                value=value if ok else None,
                state=state,
            )
        )
    return s


def ask(s, space: tuple[Param, ...]):
    """The next trial's parameters (spec values) and Optuna's handle for it."""
    trial = s.ask({p.path: _distribution(p) for p in space})
    params = {}
    for p in space:
        v = trial.params[p.path]
        params[p.path] = p.values[v] if p.kind == "choice" else (int(v) if p.kind == "int" else float(v))
    return params, trial


def enqueue(s, space: tuple[Param, ...], params: dict):
    """A handle for a trial continued with the parameters it already has."""
    s.enqueue_trial({p.path: _internal(p, params[p.path]) for p in space})
    return ask(s, space)[1]


def tell(s, handle, record: dict, settings: Settings) -> None:
    optuna = _optuna()
    if handle is None:
        return
    value = record.get("objective")
    if record["status"] == "done" and isinstance(value, float):
        s.tell(handle, value)
    else:
        s.tell(
            handle,
            state=optuna.trial.TrialState.PRUNED if record["status"] == "pruned" else optuna.trial.TrialState.FAIL,
        )
