"""``nnctl tune``: trials of one spec over its ``[tune]`` search space, each an ordinary run in its own process.

The tune folder holds, per trial, ``trial-NNN.toml`` (the spec with the trial's values; it trains as
written), ``trial-NNN.h5``, ``trial-NNN.run/`` (its run folder) and ``trial-NNN.log`` (its stderr), and
for the whole search ``tune.json`` (settings and every trial's state, rewritten after each change),
``results.csv`` / ``results.json``, ``best.toml`` and ``objective.png``. A trial is
``nnctl train trial-NNN.toml --json --resume auto`` in a new session: a signal to ``nnctl tune`` is
forwarded once to each running trial (SIGINT keeps its last epoch, SIGTERM its very batch), and running
the same ``nnctl tune`` again skips the finished trials and continues the interrupted ones from their
checkpoints. Random trial i draws from its own seeded stream and grid trial i is the i-th grid point, so
a search is reproducible whatever ``--parallel``; TPE (optuna) is reproducible with ``--parallel 1``.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from nnctl import fs, tune_space
from nnctl import spec as spec_mod
from nnctl.errors import Interrupted, NnctlError, Preempted, SpecError
from nnctl.spec_extends import PATH_KEYS, load_chain
from nnctl.tensorboard import hparams
from nnctl.tune_optuna import ask, enqueue, study, tell
from nnctl.tune_report import finish, write_results, write_spec
from nnctl.tune_space import Settings

if TYPE_CHECKING:
    from nnctl.spec_model import Spec

STATE = "tune.json"
FINISHED = ("done", "pruned", "failed")
Emit = Callable[[dict], None]


def _noop(event: dict) -> None:
    pass


def load(spec_path: str, overrides: Sequence[str] = ()) -> tuple[dict, Spec, Settings]:
    """(the spec as written with overrides and absolute paths, the validated spec, the [tune] settings)."""
    validated = spec_mod.load(spec_path, list(overrides))  # also checks [tune] against the spec
    if not isinstance(validated.tune, dict):
        raise SpecError(
            f"{spec_path}: tune: no [tune] section; add one, e.g. [tune.space] "
            f'"train.optimizer.learning_rate" = {{ log_uniform = [0.0001, 0.1] }}'
        )
    settings = tune_space.parse(validated.tune, validated, source=spec_path)
    raw, _ = load_chain(spec_path, spec_mod.load_file)
    for item in overrides:
        spec_mod.apply_override(raw, item)
    base = pathlib.Path(spec_path).resolve().parent
    for keys in PATH_KEYS:  # trial specs live in the tune folder: every path they hold is absolute
        node: Any = raw
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            p = pathlib.Path(node[keys[-1]]).expanduser()
            node[keys[-1]] = str(p if p.is_absolute() else (base / p).resolve())
    return raw, validated, settings


def default_dir(validated: Spec) -> pathlib.Path:
    ckpt = pathlib.Path(validated.checkpoint)
    return ckpt.with_name(f"{ckpt.stem}.tune")


def trial_spec(raw: dict, settings: Settings, params: dict, checkpoint: str, tensorboard: str | None) -> dict:
    """The spec of one trial: the parameters set, the trial's epochs, its checkpoint in the tune folder."""
    out = tune_space.apply(raw, params)
    if settings.epochs is not None:
        out.setdefault("train", {})["epochs"] = settings.epochs
    out["output"] = {"checkpoint": checkpoint}
    if tensorboard:
        out["train"]["tensorboard"] = tensorboard
    return out


class _Running:
    def __init__(self, record: dict, proc: subprocess.Popen, log_file, handle=None):
        self.record, self.proc, self.log_file, self.handle = record, proc, log_file, handle
        self.started = time.perf_counter()
        self.pruned = False
        self.done: dict | None = None


class Tuner:
    """One search: proposes parameters, runs up to ``parallel`` trials at once, books each as it ends."""

    def __init__(
        self,
        spec_path: str,
        out_dir,
        overrides: Sequence[str] = (),
        trials: int | None = None,
        parallel: int | None = None,
        device: str = "auto",
        emit: Emit = _noop,
    ):
        self.spec_path = str(spec_path)
        self.raw, self.validated, self.settings = load(self.spec_path, overrides)
        self.dir = pathlib.Path(out_dir) if out_dir else default_dir(self.validated)
        self.n_trials = trials or self.settings.trials
        self.parallel = parallel or self.settings.parallel
        self.device, self.emit = device, emit
        self.stop_signal: int | None = None
        self.events: queue.Queue = queue.Queue()
        self.study = None

    # -- state ----------------------------------------------------------------------------------------
    def _load_state(self) -> dict:
        path = self.dir / STATE
        fresh = {
            "spec": os.path.abspath(self.spec_path),
            "settings": self.settings.fingerprint(),
            "elapsed": 0.0,
            "trials": [],
        }
        if not path.is_file():
            return fresh
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecError(f"{path}: unreadable tune state ({exc}); remove it or use another --out") from None
        if state.get("settings") != self.settings.fingerprint():
            raise SpecError(
                f"{path}: this folder holds a search of another [tune] section (space, objective, "
                f"epochs, sampler, seed or pruner differ); use another --out"
            )
        return state

    def _save(self) -> None:
        state = self.state
        fs.atomic_write(self.dir / STATE, lambda tmp: pathlib.Path(tmp).write_text(json.dumps(state, indent=2) + "\n"))

        write_results(self.dir, self.settings, state["trials"])

    # -- proposing ------------------------------------------------------------------------------------
    def _propose(self, index: int):
        s = self.settings
        if s.sampler == "grid":
            return tune_space.grid(s.space)[index], None
        if s.sampler == "random":
            return tune_space.random_params(s.space, s.seed, index), None

        return ask(self.study, s.space)

    # -- running --------------------------------------------------------------------------------------
    def _launch(self, record: dict, handle) -> _Running:
        name = f"trial-{record['trial']:03d}"
        tb = self.validated.train.tensorboard
        spec = trial_spec(
            self.raw, self.settings, record["params"], f"{name}.h5", str(pathlib.Path(tb) / name) if tb else None
        )
        header = f"nnctl tune {self.spec_path}: trial {record['trial']}\n" + "\n".join(
            f"{p} = {json.dumps(v)}" for p, v in record["params"].items()
        )
        path = write_spec(self.dir / name, spec, header)
        record.update(
            status="running",
            spec=str(path),
            checkpoint=str(self.dir / f"{name}.h5"),
            run_dir=str(self.dir / f"{name}.run"),
        )
        cmd = [sys.executable, "-m", "nnctl", "train", str(path), "--json", "--resume", "auto", "--device", self.device]
        log_file = open(self.dir / f"{name}.log", "a", encoding="utf-8")
        # a session of its own: a Ctrl-C at the terminal reaches nnctl tune only, which forwards it once
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, text=True, start_new_session=True
        )
        run = _Running(record, proc, log_file, handle)
        threading.Thread(target=self._read, args=(run,), daemon=True).start()
        self.emit({"event": "trial_start", "trial": record["trial"], "params": record["params"]})
        return run

    def _read(self, run: _Running) -> None:
        assert run.proc.stdout is not None
        for line in run.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.put((run, event))
        run.proc.wait()
        self.events.put((run, None))

    def _on_epoch(self, run: _Running, event: dict) -> None:
        value = event.get(self.settings.objective)
        if not isinstance(value, (int, float)):
            return
        run.record.setdefault("curve", []).append(float(value))
        if self.settings.pruner == "median" and not run.pruned and self._worse_than_median(run.record):
            run.pruned = True
            run.proc.send_signal(signal.SIGINT)  # the trial keeps this epoch and ends (exit 130)

    def _worse_than_median(self, record: dict) -> bool:
        """The median rule: worse at this epoch than the median of the finished trials' values there."""
        epoch = len(record["curve"])
        others = [
            t["curve"][epoch - 1]
            for t in self.state["trials"]
            if t["status"] in ("done", "pruned") and len(t.get("curve", [])) >= epoch
        ]
        if len(others) < max(self.settings.startup_trials, 1):
            return False
        median, value = statistics.median(others), record["curve"][-1]
        return value < median if self.settings.higher_is_better else value > median

    def _on_exit(self, run: _Running) -> None:
        run.log_file.close()
        record, rc = run.record, run.proc.returncode
        record["seconds"] = round(record.get("seconds", 0.0) + time.perf_counter() - run.started, 3)
        done = run.done
        if done is not None:
            record["epochs"] = done.get("epochs_run")
            value = done.get("metrics", {}).get(self.settings.objective)
            record["objective"] = float(value) if isinstance(value, (int, float)) else None
        if rc == 0 and done is not None:
            record["status"] = "done"
        elif run.pruned and rc == 130:
            record["status"] = "pruned"
        elif rc in (130, 143) or (rc is not None and rc < 0):
            record["status"] = "interrupted"  # continued from its checkpoint by the next nnctl tune
        else:
            record["status"] = "failed"
            record["message"] = _last_line(self.dir / f"trial-{record['trial']:03d}.log") or f"exit code {rc}"
        tb = self.validated.train.tensorboard
        if tb and isinstance(record.get("objective"), float) and record["status"] in ("done", "pruned"):
            hparams(
                tb, f"trial-{record['trial']:03d}", record["params"], {self.settings.objective: record["objective"]}
            )
        if self.study is not None and record["status"] in FINISHED:
            tell(self.study, run.handle, record, self.settings)
        self.emit({"event": "trial", **record})

    def _on_signal(self, signum, frame) -> None:
        first = self.stop_signal is None
        self.stop_signal = signum
        if first:  # forwarded once: a second SIGINT to a trial would stop it without its checkpoint
            for run in list(self.running.values()):
                if run.proc.poll() is None:
                    run.proc.send_signal(signum)

    def run(self) -> dict:
        """Run the search to its end (or a signal); returns the summary (``tune_report.finish``).

        The folder stays locked meanwhile: a second ``nnctl tune`` into it is refused at once."""
        fs.check_output_dir(self.dir, "tune folder")
        with fs.run_lock(self.dir / STATE, "tune folder"):
            return self._run()

    def _run(self) -> dict:
        self.state = self._load_state()
        self.dir.mkdir(parents=True, exist_ok=True)
        records = {t["trial"]: t for t in self.state["trials"]}
        if self.settings.sampler == "tpe":
            self.study = study(self.settings, [t for t in self.state["trials"] if t["status"] in FINISHED])
        elif self.settings.sampler == "grid":
            self.n_trials = min(self.n_trials, len(tune_space.grid(self.settings.space)))
        pending = [i for i in range(self.n_trials) if records.get(i, {}).get("status") not in FINISHED]
        skipped = self.n_trials - len(pending)
        if skipped:
            self.emit(
                {
                    "event": "note",
                    "message": f"{self.dir}: {skipped} of {self.n_trials} trials already "
                    f"finished; continuing with the rest",
                }
            )
        self.running: dict[int, _Running] = {}
        t0, previous = time.perf_counter(), float(self.state.get("elapsed", 0.0))
        old = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while pending or self.running:
                limit = self.settings.time_limit
                out_of_time = bool(limit) and previous + time.perf_counter() - t0 >= limit
                while pending and len(self.running) < self.parallel and self.stop_signal is None and not out_of_time:
                    i = pending.pop(0)
                    record = records.get(i)
                    handle = None
                    if record is None:  # a new trial; an interrupted one keeps its parameters
                        params, handle = self._propose(i)
                        record = records[i] = {"trial": i, "params": params, "status": "pending"}
                        self.state["trials"].append(record)
                        self.state["trials"].sort(key=lambda t: t["trial"])
                    elif self.study is not None:
                        handle = enqueue(self.study, self.settings.space, record["params"])
                    self.running[i] = self._launch(record, handle)
                    self._save()
                if not self.running:
                    break
                try:
                    run, event = self.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if event is None:
                    self.running.pop(run.record["trial"])
                    self._on_exit(run)
                    self.state["elapsed"] = previous + time.perf_counter() - t0
                    self._save()
                elif event.get("event") == "epoch":
                    self._on_epoch(run, event)
                    self.emit({"event": "trial_epoch", "trial": run.record["trial"], **event})
                elif event.get("event") == "done":
                    run.done = event
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            for run in self.running.values():  # an error here: no trial outlives nnctl tune
                if run.proc.poll() is None:
                    run.proc.kill()
        if self.stop_signal is not None:
            left = sum(t["status"] not in FINISHED for t in self.state["trials"]) + len(pending)
            again = f"nnctl tune {self.spec_path} --out {self.dir}"
            what = "terminated" if self.stop_signal == signal.SIGTERM else "interrupted"
            cls = Preempted if self.stop_signal == signal.SIGTERM else Interrupted
            raise cls(f"{what}: {left} trial(s) not finished, state in {self.dir / STATE}; continue: {again}")
        return finish(self.dir, self.settings, self.state["trials"], self.spec_path)


def _last_line(path: pathlib.Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def tune(
    spec_path: str,
    out_dir=None,
    overrides: Sequence[str] = (),
    trials: int | None = None,
    parallel: int | None = None,
    device: str = "auto",
    emit: Emit = _noop,
) -> dict:
    """Run ``nnctl tune``: the summary with every trial, the best one and the files written."""
    result = Tuner(spec_path, out_dir, overrides, trials, parallel, device, emit).run()
    if result["best"] is None:
        raise NnctlError(f"{result['dir']}: no trial finished with an objective; see the trial-NNN.log files")
    return result
