"""What ``nnctl tune`` leaves besides the trials: the results table, the best spec, the objective plot.

``results.csv`` has one row per trial (trial, status, each parameter, the objective at the trial's
checkpoint epoch, epochs, seconds); ``results.json`` the same rows with the best trial; ``best.toml`` is
the best trial's spec with its checkpoint at ``best.h5`` beside it (it trains as written and reproduces
that trial); ``objective.png`` has one panel per parameter, the objective of each finished trial
against the parameter's value (log axis for log-scaled ones), the best trial circled.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib

from nnctl import fs, toml_write
from nnctl.errors import SpecError
from nnctl.spec import load_file
from nnctl.tune_space import Settings


def best(settings: Settings, trials: list[dict]) -> dict | None:
    """The finished trial (status done) with the best finite objective; ties go to the lower trial number."""
    scored = [
        t
        for t in trials
        if t.get("status") == "done" and isinstance(t.get("objective"), (int, float)) and math.isfinite(t["objective"])
    ]
    if not scored:
        return None
    sign = -1.0 if settings.higher_is_better else 1.0
    return min(scored, key=lambda t: (sign * t["objective"], t["trial"]))


def rows(settings: Settings, trials: list[dict]) -> tuple[list[str], list[list]]:
    header = ["trial", "status", *(p.path for p in settings.space), settings.objective, "epochs", "seconds"]
    out = []
    for t in sorted(trials, key=lambda t: t["trial"]):
        out.append(
            [
                t["trial"],
                t.get("status", ""),
                *(t["params"].get(p.path) for p in settings.space),
                t.get("objective"),
                t.get("epochs"),
                t.get("seconds"),
            ]
        )
    return header, out


def _cell(v) -> str:
    if v is None:
        return ""
    return json.dumps(v) if isinstance(v, (list, dict, bool)) else str(v)


def write_results(folder, settings: Settings, trials: list[dict]) -> None:
    """results.csv and results.json in ``folder`` (rewritten after every trial)."""
    folder = pathlib.Path(folder)
    header, table = rows(settings, trials)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in table:
        w.writerow([_cell(c) for c in r])
    fs.atomic_write(folder / "results.csv", lambda tmp: pathlib.Path(tmp).write_text(buf.getvalue()))
    top = best(settings, trials)
    doc = {
        "objective": settings.objective,
        "mode": "max" if settings.higher_is_better else "min",
        "sampler": settings.sampler,
        "best_trial": top["trial"] if top else None,
        "trials": [
            dict(zip(header, r)) | {"params": t["params"]}
            for r, t in zip(table, sorted(trials, key=lambda t: t["trial"]))
        ],
    }
    fs.atomic_write(folder / "results.json", lambda tmp: pathlib.Path(tmp).write_text(json.dumps(doc, indent=2) + "\n"))


def write_spec(path_stem: pathlib.Path, spec: dict, header: str = "") -> pathlib.Path:
    """``<stem>.toml`` (or ``.json`` where a null has no TOML form), written atomically; returns the path."""
    try:
        text, path = toml_write.dump(spec, skip_null=False), path_stem.with_suffix(".toml")
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    except SpecError:
        text, path = json.dumps(spec, indent=2) + "\n", path_stem.with_suffix(".json")
    fs.atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text, encoding="utf-8"))
    return path


def write_best(folder, settings: Settings, trial: dict, spec_path: str) -> pathlib.Path:
    """best.toml (or best.json): the best trial's spec, its checkpoint ``best.h5`` in the tune folder."""
    folder = pathlib.Path(folder)
    spec = load_file(trial["spec"])
    spec["output"] = {"checkpoint": "best.h5"}
    header = (
        f"the best of nnctl tune {spec_path}: trial {trial['trial']}, {settings.objective} = "
        f"{trial['objective']:.6g} after {trial.get('epochs')} epochs\n"
        + "\n".join(f"{p} = {json.dumps(v)}" for p, v in trial["params"].items())
    )
    return write_spec(folder / "best", spec, header)


def plot(folder, settings: Settings, trials: list[dict]) -> pathlib.Path | None:
    """objective.png: the objective against each parameter; None where no trial has an objective."""
    points = [
        t
        for t in trials
        if t.get("status") in ("done", "pruned")
        and isinstance(t.get("objective"), float)
        and math.isfinite(t["objective"])
    ]
    if not points:
        return None
    from matplotlib.figure import Figure

    top = best(settings, trials)
    n = len(settings.space)
    cols = min(n, 3)
    fig = Figure(figsize=(4.5 * cols, 3.4 * -(-n // cols)), layout="constrained")
    fig.suptitle(f"{settings.objective} of {len(points)} trials ({settings.sampler} search)")
    axes = fig.subplots(-(-n // cols), cols, squeeze=False).ravel()
    for ax, p in zip(axes, settings.space):
        if p.kind == "choice":  # categories at 0..k-1, labelled with their values
            labels = [json.dumps(v) for v in p.values]
            xs: list[float] = [
                float(labels.index(json.dumps(t["params"][p.path])))
                if json.dumps(t["params"][p.path]) in labels
                else -1.0
                for t in points
            ]
            ax.set_xticks(range(len(labels)), [lb if len(lb) <= 16 else lb[:15] + "…" for lb in labels])
        else:
            xs = [float(t["params"][p.path]) for t in points]
            if p.kind == "log_uniform" or p.log:
                ax.set_xscale("log")
        ys = [t["objective"] for t in points]
        done = [t["status"] == "done" for t in points]
        ax.scatter([x for x, d in zip(xs, done) if d], [y for y, d in zip(ys, done) if d], label="trial")
        if not all(done):
            ax.scatter(
                [x for x, d in zip(xs, done) if not d],
                [y for y, d in zip(ys, done) if not d],
                marker="x",
                label="pruned",
            )
        if top is not None:
            i = points.index(top)
            ax.plot(
                [xs[i]],
                [ys[i]],
                "o",
                markersize=12,
                fillstyle="none",
                color="black",
                label=f"best (trial {top['trial']})",
            )
        ax.set_xlabel(p.path)
        ax.set_ylabel(settings.objective)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[n:]:
        ax.set_visible(False)
    out = pathlib.Path(folder) / "objective.png"
    fs.atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return out


def finish(folder, settings: Settings, trials: list[dict], spec_path: str) -> dict:
    """Write the results, the best spec and the plot; the summary ``nnctl tune`` returns."""
    folder = pathlib.Path(folder)
    write_results(folder, settings, trials)
    top = best(settings, trials)
    best_spec = write_best(folder, settings, top, spec_path) if top is not None else None
    png = plot(folder, settings, trials)
    header, table = rows(settings, trials)
    return {
        "event": "tune",
        "dir": str(folder),
        "objective": settings.objective,
        "mode": "max" if settings.higher_is_better else "min",
        "sampler": settings.sampler,
        "trials": [
            dict(zip(header, r)) | {"params": t["params"]}
            for r, t in zip(table, sorted(trials, key=lambda t: t["trial"]))
        ],
        "best": None
        if top is None
        else {
            "trial": top["trial"],
            "params": top["params"],
            "objective": top["objective"],
            "epochs": top.get("epochs"),
            "checkpoint": top.get("checkpoint"),
        },
        "best_spec": None if best_spec is None else str(best_spec),
        "results": str(folder / "results.csv"),
        "plot": None if png is None else str(png),
    }
