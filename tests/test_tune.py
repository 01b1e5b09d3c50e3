"""``nnctl tune``: a search over a task whose best learning rate is known, the best spec, grid, resume, errors.

The task: y = X w* + b* with X centred and X^T X / n = I exactly, a linear Dense(1) trained by full-batch
SGD on the mean squared error, validated on the training rows themselves. The gradient is then
2 (w - w*) (and 2 (b - b*)), so after k steps at rate lr the validation loss is (1 - 2 lr)^(2k) times
the loss at the initial weights: lr = 0.5 is best, and every trial's objective is known from one other run.
"""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nnctl import run, spec, tune_space
from nnctl.errors import SpecError

EPOCHS = 2


def _data(folder: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(3)
    n, d = 64, 3
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), rng.normal(size=(n, d))]))
    x = np.sqrt(n) * q[:, 1:]  # orthogonal to the ones column: centred; X^T X / n = I
    y = x @ np.array([1.5, -2.0, 0.5]) + 0.25
    path = folder / "lin.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x0", "x1", "x2", "y"])
        w.writerows([[repr(float(v)) for v in row] for row in np.column_stack([x, y])])
    return path


def _spec(folder: pathlib.Path, tune: str, epochs: int = EPOCHS, lr: float = 0.01) -> pathlib.Path:
    data = _data(folder)
    text = f"""
name = "lin"
seed = 0
dtype = "float64"
[data]
train = "{data.name}"
validation = "{data.name}"
target = "y"
[[model.layers]]
type = "Dense"
units = 1
[train]
loss = "mse"
optimizer = {{ type = "sgd", learning_rate = {lr} }}
epochs = {epochs}
batch_size = "full"
shuffle = false
[output]
checkpoint = "runs/lin.h5"
{tune}
"""
    path = folder / "lin.toml"
    path.write_text(text)
    return path


def _tune(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "nnctl", "tune", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


RANDOM = """
[tune]
objective = "val_loss"
trials = 4
[tune.space]
"train.optimizer.learning_rate" = { log_uniform = [0.001, 0.9] }
"""


def test_search_beats_the_default_and_matches_the_maths(tmp_path):
    path = _spec(tmp_path, RANDOM)
    default = run.train(spec.load(path))["metrics"]["val_loss"]  # lr 0.01
    initial = default / (1 - 2 * 0.01) ** (2 * EPOCHS)  # the loss at the initial weights
    r = _tune(path, "--out", tmp_path / "t", "--parallel", "2", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert [t["status"] for t in result["trials"]] == ["done"] * 4
    for t in result["trials"]:  # each trial's objective as the maths says
        lr = t["params"]["train.optimizer.learning_rate"]
        assert 0.001 <= lr <= 0.9
        assert t["val_loss"] == pytest.approx(initial * (1 - 2 * lr) ** (2 * EPOCHS), rel=1e-6, abs=1e-12)
    best = result["best"]
    assert best["objective"] < default
    lrs = [t["params"]["train.optimizer.learning_rate"] for t in result["trials"]]
    assert best["params"]["train.optimizer.learning_rate"] == min(lrs, key=lambda lr: abs(1 - 2 * lr))
    # the best spec trains as written and reproduces the trial's objective
    again = subprocess.run(
        [sys.executable, "-m", "nnctl", "train", result["best_spec"], "--json", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["metrics"]["val_loss"] == pytest.approx(
        best["objective"], rel=1e-9
    )
    folder = tmp_path / "t"
    with (folder / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[best["trial"]]["val_loss"]) == pytest.approx(best["objective"])
    assert (folder / "objective.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "trial-000.run" / "metrics.jsonl").is_file()  # an ordinary run folder
    # seeded: trial i's parameters do not depend on --parallel or on which trial finished first
    settings = tune_space.parse(spec.load(path).tune, spec.load(path))
    assert lrs == [tune_space.random_params(settings.space, 0, i)["train.optimizer.learning_rate"] for i in range(4)]
    # nnctl compare reads the tune folder: one row per trial
    cmp = subprocess.run(
        [sys.executable, "-m", "nnctl", "compare", folder, "--json"], capture_output=True, text=True, timeout=60
    )
    assert cmp.returncode == 0, cmp.stderr
    assert len(json.loads(cmp.stdout)["runs"]) == 4


def test_grid_enumerates_exactly_the_grid(tmp_path):
    path = _spec(
        tmp_path,
        """
[tune]
sampler = "grid"
[tune.space]
"train.optimizer.learning_rate" = { log_uniform = [0.01, 1.0], grid = 2 }
"train.batch_size" = { int = [31, 32] }
"model.layers[0].use_bias" = { choice = [true] }
""",
        epochs=1,
    )
    r = _tune(path, "--out", tmp_path / "g", "--parallel", "2", "--json")
    assert r.returncode == 0, r.stderr
    trials = json.loads(r.stdout.splitlines()[-1])["trials"]
    got = [
        (
            t["params"]["train.optimizer.learning_rate"],
            t["params"]["train.batch_size"],
            t["params"]["model.layers[0].use_bias"],
        )
        for t in trials
    ]
    assert got == [(0.01, 31, True), (0.01, 32, True), (1.0, 31, True), (1.0, 32, True)]
    assert [t["status"] for t in trials] == ["done"] * 4


def test_grid_points():
    p = tune_space.Param("lr", "log_uniform", 1e-3, 1e-1, grid=3)
    assert p.points() == pytest.approx([1e-3, 1e-2, 1e-1], rel=1e-12)
    assert tune_space.Param("u", "uniform", -1, 1, grid=5).points() == pytest.approx([-1, -0.5, 0, 0.5, 1])
    assert tune_space.Param("n", "int", 2, 5).points() == [2, 3, 4, 5]
    assert tune_space.Param("n", "int", 1, 100, log=True, grid=3).points() == [1, 10, 100]
    space = (p, tune_space.Param("c", "choice", values=("a", "b")))
    assert [tuple(g.values()) for g in tune_space.grid(space)] == [(a, b) for a in p.points() for b in ("a", "b")]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupted_tune_skips_finished_trials(tmp_path, signum, code):
    epochs = 300
    path = _spec(tmp_path, RANDOM.replace("trials = 4", "trials = 3"), epochs=epochs)
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "tune", path, "--out", out, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(proc.stdout.readline())  # the first finished trial
        assert first["event"] == "trial" and first["status"] == "done"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert err.count("error:") == 1 and f"--out {out}" in err
    state = json.loads((out / "tune.json").read_text())
    finished = [t["trial"] for t in state["trials"] if t["status"] == "done"]
    assert 0 in finished and len(finished) < 3
    stamps = {i: os.stat(out / f"trial-{i:03d}.h5").st_mtime_ns for i in finished}
    time.sleep(0.05)
    r = _tune(path, "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    assert f"{len(finished)} of 3 trials already finished" in r.stdout
    result = json.loads(r.stdout.splitlines()[-1])
    assert [t["status"] for t in result["trials"]] == ["done"] * 3
    assert {i: os.stat(out / f"trial-{i:03d}.h5").st_mtime_ns for i in finished} == stamps  # not run again
    # a trial continued from its checkpoint ends where an uninterrupted one does: the maths of the task
    default = run.train(spec.load(path, ["train.epochs=1"]))["metrics"]["val_loss"]
    initial = default / (1 - 2 * 0.01) ** 2
    for t in result["trials"]:
        lr = t["params"]["train.optimizer.learning_rate"]
        assert t["epochs"] == epochs
        assert t["val_loss"] == pytest.approx(initial * (1 - 2 * lr) ** (2 * epochs), rel=1e-6, abs=1e-12)
    # a different space in the same folder is refused, not mixed in
    path.write_text(path.read_text().replace("0.9]", "0.8]"))
    r = _tune(path, "--out", out)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "another [tune] section" in r.stderr


def test_median_pruner_stops_a_worse_trial(tmp_path):
    path = _spec(
        tmp_path,
        """
[tune]
sampler = "grid"
pruner = "median"
startup_trials = 1
[tune.space]
"train.optimizer.learning_rate" = { choice = [0.002, 0.0002, 0.004] }
""",
        epochs=600,
    )
    r = _tune(path, "--out", tmp_path / "p", "--json")
    assert r.returncode == 0, r.stderr
    trials = json.loads(r.stdout.splitlines()[-1])["trials"]
    assert [t["status"] for t in trials] == ["done", "pruned", "done"]
    assert trials[0]["epochs"] == trials[2]["epochs"] == 600 and trials[1]["epochs"] < 600


@pytest.mark.parametrize(
    "space, message",
    [
        (
            '"train.optimzer.learning_rate" = { log_uniform = [0.001, 0.1] }',
            'tune.space."train.optimzer.learning_rate": 0.001 makes the spec invalid: train.optimzer: unknown key',
        ),
        (
            '"model.layers[3].units" = { int = [1, 4] }',
            'tune.space."model.layers[3].units": the path does not exist in the spec: index [3] is out of range',
        ),
        (
            '"model.layers[0].units" = { int = [0, 4] }',
            'tune.space."model.layers[0].units": 0 makes the spec invalid: model.layers[0].units: expected a positive',
        ),
        (
            '"train.optimizer.learning_rate" = { log_uniform = [0, 0.1] }',
            'tune.space."train.optimizer.learning_rate".log_uniform: a log scale needs lo > 0',
        ),
        (
            '"train.optimizer.learning_rate" = { uniform = [0.1, 0.01] }',
            'tune.space."train.optimizer.learning_rate".uniform: expected lo < hi, found [0.1, 0.01]',
        ),
        (
            '"train.optimizer.learning_rate" = { uniform = [0.1, 0.2, 0.3] }',
            'tune.space."train.optimizer.learning_rate".uniform: expected [lo, hi], found a list of 3',
        ),
        (
            '"train.optimizer.learning_rate" = { uniform = [0.01, 0.1], choice = [0.5] }',
            "expected exactly one of log_uniform, uniform, int, choice, found uniform, choice",
        ),
        (
            '"model.layers[0].units" = { choice = [] }',
            'tune.space."model.layers[0].units".choice: expected at least one',
        ),
        ('"train.epochs" = 3', 'tune.space."train.epochs": expected a table'),
    ],
)
def test_bad_space_is_one_clean_error(tmp_path, space, message):
    path = _spec(tmp_path, f"[tune]\n[tune.space]\n{space}\n")
    with pytest.raises(SpecError) as exc:
        spec.load(path)
    assert exc.value.lines == [f"{path}: {exc.value.lines[0].split(': ', 1)[1]}"] and message in str(exc.value)


def test_bad_space_from_the_cli(tmp_path):
    path = _spec(tmp_path, '[tune]\n[tune.space]\n"model.layers[0].units" = { int = [0, 4] }\n')
    r = _tune(path, "--out", tmp_path / "x")
    assert r.returncode == 2
    assert r.stderr == (
        f'error: {path}: tune.space."model.layers[0].units": 0 makes the spec invalid: '
        f"model.layers[0].units: expected a positive integer, found 0\n"
    )
    assert not (tmp_path / "x").exists()


def test_tune_section_in_check_schema_and_train(tmp_path):
    path = _spec(tmp_path, RANDOM.replace('objective = "val_loss"', 'objective = "val_acuracy"'))
    with pytest.raises(SpecError, match=r"tune.objective: 'val_acuracy' is not logged by this spec"):
        spec.load(path)
    path = _spec(tmp_path, RANDOM.replace("trials = 4", "trials = 0"))
    with pytest.raises(SpecError, match="tune.trials: expected a positive integer, found 0"):
        spec.load(path)
    path = _spec(tmp_path, RANDOM)
    done = run.train(spec.load(path))  # a spec with [tune] trains as written
    assert done["epochs_run"] == EPOCHS
    from nnctl.schema import spec_schema

    tune = spec_schema()["properties"]["tune"]["anyOf"][0]  # or null
    assert "objective" in tune["properties"]
    assert "log_uniform" in tune["properties"]["space"]["additionalProperties"]["properties"]
    jsonschema = pytest.importorskip("jsonschema")
    import tomllib

    raw = tomllib.loads(path.read_text())
    jsonschema.validate(raw, spec_schema())
    raw["tune"]["space"]["train.optimizer.learning_rate"] = {"unifrom": [0.1, 0.2]}
    with pytest.raises(jsonschema.ValidationError, match="'unifrom' was unexpected"):
        jsonschema.validate(raw, spec_schema())
    r = _tune(tmp_path / "lin.toml", "--out", tmp_path / "t", "--trials", "1", "--set", "tune.sampler=grid")
    assert r.returncode == 2 and "grid = 4" in r.stderr


def test_no_tune_section(tmp_path):
    path = _spec(tmp_path, "")
    r = _tune(path)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {path}: tune: no [tune] section")


def test_set_path_follows_set_semantics():
    s = {"train": {"optimizer": "adam"}, "model": {"layers": [{"units": 3}]}}
    tune_space.set_path(s, "train.optimizer.learning_rate", 0.1)
    tune_space.set_path(s, "model.layers[0].units", 8)
    assert s == {"train": {"optimizer": {"type": "adam", "learning_rate": 0.1}}, "model": {"layers": [{"units": 8}]}}
    with pytest.raises(SpecError, match="bad index"):
        tune_space.split_path("model.layers[x].units")


def test_random_and_int_samples_stay_in_range():
    space = (
        tune_space.Param("a", "int", 1, 5),
        tune_space.Param("b", "int", 1, 100, log=True),
        tune_space.Param("c", "log_uniform", 1e-4, 1e-1),
        tune_space.Param("d", "uniform", -1, 1),
        tune_space.Param("e", "choice", values=(1, "x", [2, 3])),
    )
    draws = [tune_space.random_params(space, 5, i) for i in range(400)]
    assert {d["a"] for d in draws} == {1, 2, 3, 4, 5}
    assert all(1 <= d["b"] <= 100 and isinstance(d["b"], int) for d in draws)
    assert all(1e-4 <= d["c"] <= 1e-1 and -1 <= d["d"] <= 1 for d in draws)
    logs = np.log10([d["c"] for d in draws])  # log-uniform: each decade about a third of the draws
    assert abs(np.mean(logs < -3) - 1 / 3) < 0.1 and abs(np.mean(logs > -2) - 1 / 3) < 0.1
    assert {json.dumps(d["e"]) for d in draws} == {"1", '"x"', "[2, 3]"}
    assert draws[7] == tune_space.random_params(space, 5, 7) and draws[7] != tune_space.random_params(space, 6, 7)


def test_tpe_through_optuna(tmp_path):
    pytest.importorskip("optuna")
    path = _spec(
        tmp_path,
        RANDOM.replace("[tune]", '[tune]\nsampler = "tpe"\nstartup_trials = 2').replace("trials = 4", "trials = 3"),
        epochs=1,
    )
    r = _tune(path, "--out", tmp_path / "tpe", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert [t["status"] for t in result["trials"]] == ["done"] * 3
    assert all(0.001 <= t["params"]["train.optimizer.learning_rate"] <= 0.9 for t in result["trials"])


def test_shipped_tune_example(tmp_path):
    spec_path = pathlib.Path(__file__).resolve().parent.parent / "specs" / "tune_iris.toml"
    r = _tune(spec_path, "--out", tmp_path / "iris", "--trials", "2", "--set", "tune.epochs=2")
    assert r.returncode == 0, r.stderr
    assert "best trial" in r.stdout and (tmp_path / "iris" / "best.toml").is_file()
    assert '{"l2": ' in r.stdout  # a table-valued choice shown as JSON in the results table


def test_a_diverging_trial_is_failed_and_the_search_goes_on(tmp_path):
    # lr 5: the error grows 9x per step ((1 - 2 lr) = -9), to inf in float64 within a few hundred steps
    path = _spec(
        tmp_path,
        """
[tune]
sampler = "grid"
[tune.space]
"train.optimizer.learning_rate" = { choice = [5.0, 0.25] }
""",
        epochs=400,
    )
    r = _tune(path, "--out", tmp_path / "d", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    failed, done = result["trials"]
    assert failed["status"] == "failed" and failed["val_loss"] is None
    assert "training diverged" in json.loads(r.stdout.splitlines()[0])["message"]
    assert done["status"] == "done" and result["best"]["trial"] == 1
    text = (tmp_path / "d" / "results.csv").read_text().splitlines()
    assert text[1].startswith("0,failed,5.0,,")  # no objective for the failed trial


def test_a_tune_folder_in_use_is_refused(tmp_path):
    from nnctl import fs

    path = _spec(tmp_path, RANDOM)
    with fs.run_lock(tmp_path / "busy" / "tune.json", "tune folder"):  # another nnctl tune holds it
        r = _tune(path, "--out", tmp_path / "busy")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "another nnctl run" in r.stderr


def test_tensorboard_gets_an_hparams_summary_per_trial(tmp_path):
    pytest.importorskip("tensorboardX")
    path = _spec(tmp_path, RANDOM, epochs=1)
    path.write_text(path.read_text().replace('batch_size = "full"', 'batch_size = "full"\ntensorboard = "tb"'))
    r = _tune(path, "--out", tmp_path / "t", "--trials", "1")
    assert r.returncode == 0, r.stderr
    events = list((tmp_path / "tb" / "trial-000").glob("events.out.tfevents.*"))
    blobs = b"".join(p.read_bytes() for p in events)
    assert b"loss" in blobs and b"hparams" in blobs and b"train.optimizer.learning_rate" in blobs
