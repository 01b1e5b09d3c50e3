"""K-fold cross-validation: K ordinary training runs of one spec, fold i held out as validation in run i.

Folds are drawn once from the seed: a classifier's samples are dealt class by class (each class shuffled,
then fold = position mod K over the classes in turn), so every fold holds each class's share to within one
sample; other targets are shuffled and cut into K near-equal parts. Preprocessing (normalisation,
target scaling, a CSV's category vocabularies and missing-value fills) is fitted on each run's training folds
only: a level present only in the held-out fold is out of vocabulary there (counted in the fold's
``unseen_in_validation``). Each fold trains through ``run.train`` into
its own checkpoint and run folder (``<stem>.fold<i>.h5``, ``<stem>.fold<i>.run``); the ``<stem>.kfold``
folder holds the mean and the standard deviation (NumPy's, ddof 0) over the folds of every quantity at each
run's checkpoint epoch, as a one-row run that ``nnctl compare`` and ``nnctl plot`` read.
"""

from __future__ import annotations

import copy
import json
import pathlib
from dataclasses import replace
from typing import Any

import numpy as np

from nnctl import fs
from nnctl.data import Dataset, loader, resolve_kind, unfitted_preprocessor
from nnctl.data.splits import Splits
from nnctl.data.tabular import encode_fold, read_table
from nnctl.errors import DataError, NnctlError, SpecError
from nnctl.losses import is_classification
from nnctl.multi_spec import refuse_named
from nnctl.runlog import write_run
from nnctl.spec_model import Spec
from nnctl.spec_sections import Validation


def fold_indices(n: int, k: int, seed: int, labels: np.ndarray | None = None) -> list[np.ndarray]:
    """The sorted validation indices of each of ``k`` folds over ``n`` samples, stratified by ``labels`` if given."""
    if not 2 <= k <= n:
        raise SpecError(f"--k-fold {k}: expected 2 to {n} folds for {n} samples")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(5,)))
    if labels is None:
        order = rng.permutation(n)
    else:
        order = np.concatenate([rng.permutation(np.nonzero(labels == c)[0]) for c in np.unique(labels)])
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % k
    return [np.nonzero(fold_of == i)[0] for i in range(k)]


def _raw(spec: Spec):
    """The training file's raw samples (no validation, no test), the unfitted preprocessing the loader set up,
    and for a CSV its unencoded ``tabular.Table`` (then the samples' x are row numbers into it)."""
    data = replace(spec.data, validation=None, test=None)
    kind = resolve_kind(data)
    prep = unfitted_preprocessor(spec, kind)
    table = None
    if kind == "tabular":  # cells read, encoding left for each fold to fit on its own training rows
        table = read_table(data, prep)
        s = Splits(np.arange(len(table.y)), table.y, w_train=table.w)  # x: row numbers into table.cols
    else:
        s = loader(kind)(data, prep, spec.seed)
    if s.ordered:
        raise DataError(
            f"{data.train}: --k-fold needs exchangeable samples; {kind} windows are ordered in time "
            f"(validate on the end of the series with data.validation = {{ split = 0.2 }})"
        )
    if s.y_train is None:
        raise DataError(f"{data.train}: --k-fold needs labelled training data")
    if data.subset and data.subset < len(s.x_train):  # the same seeded subset load_dataset takes
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(2,)))
        keep = np.sort(rng.permutation(len(s.x_train))[: data.subset])
        s.x_train, s.y_train = s.x_train[keep], s.y_train[keep]
        s.w_train = None if s.w_train is None else s.w_train[keep]
    return s, prep, table


def strata(y: np.ndarray, task: str) -> np.ndarray | None:
    """The labels folds are stratified by: class labels of a classifier (one-hot rows by their class), else None."""
    if task == "regression":
        return None
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y


def fold_datasets(spec: Spec, k: int):
    """Yield (validation indices, Dataset) for each fold, preprocessing fitted on the other folds."""
    s, prep, table = _raw(spec)
    folds = fold_indices(len(s.x_train), k, spec.seed, strata(s.y_train, prep.task))
    dtype = np.dtype(spec.dtype)
    name = spec.data.train
    for i, val_idx in enumerate(folds):
        train = np.ones(len(s.x_train), bool)
        train[val_idx] = False
        p = copy.deepcopy(prep)
        if table is not None:  # category vocabularies and fill values from the training folds only
            raw_tr, raw_va, defaults = encode_fold(table, s.x_train[train], s.x_train[val_idx], p)
        else:
            raw_tr, raw_va, defaults = s.x_train[train], s.x_train[val_idx], dict(s.defaults)
        p.fit_x(raw_tr)
        p.fit_y(s.y_train[train], name)
        x_tr, y_tr = p.transform_x(raw_tr, dtype), p.encode_y(s.y_train[train], name, dtype)
        x_va = p.transform_x(raw_va, dtype)
        y_va = p.encode_y(s.y_train[val_idx], f"{name} (fold {i + 1} of {k})", dtype)
        w_tr = None if s.w_train is None else s.w_train[train]
        yield val_idx, Dataset(x_tr, y_tr, x_va, y_va, None, None, p, defaults, w_tr)


def fold_paths(spec: Spec, i: int) -> tuple[str, str | None]:
    """Checkpoint and run folder of fold ``i`` (1-based): beside the spec's checkpoint, or inside its run folder."""
    ckpt = pathlib.Path(spec.checkpoint)
    run_dir = spec.output.run_dir
    return (
        str(ckpt.with_name(f"{ckpt.stem}.fold{i}{ckpt.suffix or '.h5'}")),
        str(pathlib.Path(run_dir) / f"fold{i}") if run_dir else None,
    )


def summary_dir(spec: Spec) -> pathlib.Path:
    run_dir = spec.output.run_dir
    ckpt = pathlib.Path(spec.checkpoint)
    return pathlib.Path(run_dir) / "kfold" if run_dir else ckpt.with_name(f"{ckpt.stem}.kfold")


def cross_validate(spec: Spec, k: int, train, emit=lambda e: None, **train_kw) -> dict:
    """Train ``spec`` once per fold through ``train(spec, dataset=..., emit=..., **train_kw)`` (``run.train``);
    returns the k-fold summary (per-fold metrics, mean and std of each) and writes it as a run folder."""
    refuse_named(spec, "train --k-fold")
    if spec.data.validation is not None:
        emit(
            {
                "event": "note",
                "message": "--k-fold replaces data.validation: each fold is validated on its held-out part",
            }
        )
    for i in range(1, k + 1):  # every output writable before the first fold trains
        ckpt, run_dir = fold_paths(spec, i)
        fs.check_output_file(ckpt, "checkpoint")
        if run_dir:
            fs.check_output_dir(run_dir, "run folder")
    fs.check_output_dir(summary_dir(spec), "k-fold folder")
    folds = []
    for i, (val_idx, ds) in enumerate(fold_datasets(spec, k), start=1):
        split = Validation(split=round(len(val_idx) / (len(val_idx) + len(ds.x_train)), 6))
        ckpt, run_dir = fold_paths(spec, i)
        fold_spec = replace(
            spec,
            data=replace(spec.data, validation=split),
            output=replace(spec.output, checkpoint=ckpt, run_dir=run_dir or spec.output.run_dir),
        )
        try:
            done = train(fold_spec, dataset=ds, emit=lambda e, i=i: emit({**e, "fold": i, "folds": k}), **train_kw)
        except NnctlError as exc:  # same kind and exit code, saying which fold
            exc.args = (f"fold {i} of {k}: {exc}",)
            raise
        folds.append(
            {
                "fold": i,
                "checkpoint": done["checkpoint"],
                "run_dir": done["run_dir"],
                "train_samples": int(len(ds.x_train)),
                "validation_samples": int(len(val_idx)),
                "epochs_run": done["epochs_run"],
                "weights_epoch": done["weights_epoch"],
                "unseen_in_validation": dict(ds.prep.unseen),
                "metrics": {m: v for m, v in done["metrics"].items() if _scored(m)},
            }
        )
    names = [m for m in folds[0]["metrics"] if all(m in f["metrics"] for f in folds)]
    values = {m: np.array([f["metrics"][m] for f in folds], dtype=np.float64) for m in names}
    result: dict[str, Any] = {
        "event": "kfold",
        "k": k,
        "seed": spec.seed,
        "stratified": strata_used(spec),
        "folds": folds,
        "mean": {m: float(v.mean()) for m, v in values.items()},
        "std": {m: float(v.std()) for m, v in values.items()},
        "run_dir": str(summary_dir(spec)),
    }
    history = {m: [result["mean"][m]] for m in names}
    history.update({f"{m}_std": [result["std"][m]] for m in names})
    write_run(
        summary_dir(spec),
        spec,
        history,
        {
            "epochs": 1,
            "checkpoint_epoch": None,
            "kfold": k,
            "note": f"mean and std over {k} folds at each fold's checkpoint epoch",
            "mean": result["mean"],
            "std": result["std"],
        },
    )
    fs.atomic_write(
        summary_dir(spec) / "kfold.json", lambda tmp: pathlib.Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    )
    return result


def _scored(name: str) -> bool:
    return name not in ("lr", "seconds", "samples_per_second") and not name.endswith("_seconds")


def strata_used(spec: Spec) -> bool:
    return bool(is_classification(spec.train.loss.type))
