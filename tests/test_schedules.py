"""Per-step learning-rate schedules against hand-computed rates and PyTorch's schedulers, and across a resume."""

import math
import os
import signal

import numpy as np
import pytest

from helpers import load_spec
from nnctl import run
from nnctl.checkpoint import Checkpoint
from nnctl.errors import Interrupted
from nnctl.schedules import Schedule


def rates(s, epochs, batches):
    return [s.rate(e, b, batches) for e in range(epochs) for b in range(batches)]


def test_warmup_steps_on_every_schedule_then_the_schedule_shifted():
    # 4 warmup steps, 3 steps per epoch: 1/4, 2/4, 3/4, 1 of the first rate, then step decay every 2 epochs
    s = Schedule(0.8, type="step", step_size=2, factor=0.5, warmup_steps=4)
    r = rates(s, 4, 3)
    np.testing.assert_allclose(r[:4], [0.2, 0.4, 0.6, 0.8])
    # after warmup, t = (s - 4) / 3 epochs: steps 4..9 are t < 2 -> 0.8, steps 10.. -> 0.4
    np.testing.assert_allclose(r[4:10], [0.8] * 6)
    np.testing.assert_allclose(r[10:], [0.4] * 2)
    # warmup_epochs = 1.5 with 2 steps per epoch is 3 steps
    e = Schedule(1.0, type="exponential", decay_rate=0.5, warmup_epochs=1.5)
    np.testing.assert_allclose(rates(e, 3, 2), [1 / 3, 2 / 3, 1.0, 1.0, 0.5**0.5, 0.5])


def test_multistep_and_polynomial_by_hand():
    m = Schedule(1.0, type="multistep", milestones=[1, 2.5], factor=0.1)
    np.testing.assert_allclose(rates(m, 4, 2), [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01])
    p = Schedule(1.0, type="polynomial", power=2.0, min_lr=0.1, total_epochs=4)
    t = np.arange(8) / 2
    np.testing.assert_allclose(rates(p, 4, 2), 0.1 + 0.9 * (1 - t / 4) ** 2)


def test_cosine_restarts_by_hand():
    # cycles of 2, 4, 8 epochs (t_mul 2), each peak halved (m_mul 0.5), one step per epoch
    s = Schedule(1.0, type="cosine_restarts", cycle_epochs=2, t_mul=2.0, m_mul=0.5)
    want = [1.0, 0.5, 0.5, 0.5 * (1 + math.cos(math.pi / 4)) / 2, 0.25, 0.5 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.25]
    np.testing.assert_allclose([s.lr(e) for e in range(7)], want, atol=1e-12)


def test_one_cycle_by_hand():
    # 10 steps, pct 0.3: up from 0.04 to 1 over steps 0..2, down to 4e-6 over steps 2..9
    s = Schedule(1.0, type="one_cycle", total_epochs=5)
    r = rates(s, 5, 2)
    up = [0.04 + 0.96 * (1 - math.cos(math.pi * i / 2)) / 2 for i in range(3)]
    down = [4e-6 + (1 - 4e-6) * (1 + math.cos(math.pi * i / 7)) / 2 for i in range(1, 8)]
    np.testing.assert_allclose(r, up + down)


@pytest.mark.torch
def test_schedules_against_pytorch():
    torch = pytest.importorskip("torch")

    def torch_rates(make, steps, per_step=True, batches=1):
        w = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.5)
        sched = make(opt)
        out = []
        for i in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if per_step:
                sched.step()
            else:  # fractional epochs, the documented use of CosineAnnealingWarmRestarts
                sched.step((i + 1) / batches)
        return out

    ours = rates(Schedule(0.5, type="one_cycle", total_epochs=6, pct_start=0.25), 6, 5)
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=30, pct_start=0.25), 30)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    ours = rates(Schedule(0.5, type="cosine_restarts", cycle_epochs=2, t_mul=2, min_lr=0.01), 7, 4)
    ref = torch_rates(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2, eta_min=0.01),
        28,
        per_step=False,
        batches=4,
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-9)
    ours = [Schedule(0.5, type="multistep", milestones=[2, 5], factor=0.1).lr(e) for e in range(7)]
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2, 5], gamma=0.1), 7)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    ours = [Schedule(0.5, type="polynomial", power=2.0, total_epochs=5).lr(e) for e in range(7)]
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=5, power=2.0), 7)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)


def test_logged_rate_is_the_last_step_and_resume_continues_the_rates(tmp_path):
    """A one-cycle run stopped after 2 of 4 epochs and resumed logs the rates of an uninterrupted run."""
    sched = 'train.lr_schedule={type = "one_cycle", warmup_steps = 3}'
    common = ["data.subset=200", "train.batch_size=50", "train.optimizer.learning_rate=0.05", sched]
    full = load_spec("digits_mlp.toml", tmp_path / "full", *common, "train.epochs=4")
    run.train(full)
    part = load_spec("digits_mlp.toml", tmp_path / "part", *common, "train.epochs=4")

    def interrupt_after_2(event):  # a real Ctrl-C during epoch 3: the schedule's span stays 4 epochs
        if event["event"] == "epoch" and event["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        run.train(part, emit=interrupt_after_2)
    assert Checkpoint(part.output.checkpoint).epoch == 2
    resumed = load_spec("digits_mlp.toml", tmp_path / "part", *common, "train.epochs=4")
    run.train(resumed, resume=part.output.checkpoint)
    a = Checkpoint(full.output.checkpoint).history["lr"]
    b = Checkpoint(resumed.output.checkpoint).history["lr"]
    np.testing.assert_array_equal(a, b)
    wa, wb = Checkpoint(full.output.checkpoint).weights, Checkpoint(resumed.output.checkpoint).weights
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    n = Checkpoint(full.output.checkpoint).optimizer["iterations"] // 4  # steps per epoch
    assert n >= 3
    s = Schedule(0.05, type="one_cycle", warmup_steps=3, total_epochs=4)
    np.testing.assert_allclose(a, [s.rate(e, n - 1, n) for e in range(4)], rtol=1e-12)


@pytest.mark.parametrize(
    "table,expect",
    [
        ({"type": "cosine", "warmup_steps": 10, "warmup_epochs": 1}, "keep one of them"),
        ({"type": "multistep"}, "train.lr_schedule.milestones: multistep needs"),
        ({"type": "multistep", "milestones": [3, -1]}, "train.lr_schedule.milestones"),
        ({"type": "cosine_restarts", "t_mul": 0.5}, "train.lr_schedule.t_mul"),
        ({"type": "one_cycle", "pct_start": 1.0}, "train.lr_schedule.pct_start"),
    ],
)
def test_schedule_tables_are_checked(table, expect, tmp_path):
    from nnctl.errors import SpecError

    with pytest.raises(SpecError, match=expect):
        load_spec("iris_mlp.toml", tmp_path, f"train.lr_schedule={_toml(table)}")


def _toml(table):
    return "{" + ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in table.items()) + "}"


def test_every_schedule_trains_from_a_spec(tmp_path):
    for table in (
        {"type": "multistep", "milestones": [1, 2], "warmup_steps": 2},
        {"type": "polynomial", "power": 2},
        {"type": "cosine_restarts", "cycle_epochs": 1, "warmup_epochs": 0.5},
        {"type": "one_cycle"},
    ):
        s = load_spec("iris_mlp.toml", tmp_path / table["type"], "train.epochs=3", f"train.lr_schedule={_toml(table)}")
        done = run.train(s)
        assert done["epochs_run"] == 3
        lr = Checkpoint(s.output.checkpoint).history["lr"]
        assert len(lr) == 3 and all(0 < v <= 0.01 + 1e-12 for v in lr)  # no schedule exceeds learning_rate


@pytest.mark.parametrize(
    "alias,canonical",
    [
        ("CosineDecay", "cosine"),
        ("ExponentialDecay", "exponential"),
        ("ReduceLROnPlateau", "plateau"),
        ("OneCycleLR", "one_cycle"),
        ("multi_step", "multistep"),
    ],
)
def test_keras_and_pytorch_class_names_resolve_to_the_schedule_and_are_stored_canonical(alias, canonical, tmp_path):
    s = load_spec("iris_mlp.toml", tmp_path, f'train.lr_schedule={{type = "{alias}", milestones = [1]}}')
    assert s.train.lr_schedule.type == canonical
    by_alias = Schedule(0.1, type=alias, total_epochs=3, milestones=[1])
    by_name = Schedule(0.1, type=canonical, total_epochs=3, milestones=[1])
    assert rates(by_alias, 3, 4) == rates(by_name, 3, 4)


def test_an_unknown_schedule_names_the_closest_and_the_known_ones(tmp_path):
    from nnctl.errors import SpecError

    with pytest.raises(
        SpecError,
        match=r"train.lr_schedule.type: unknown schedule 'cosin'; did you mean 'cosine'\?"
        r"; expected one of constant, cosine, ",
    ):
        load_spec("iris_mlp.toml", tmp_path, 'train.lr_schedule={type = "cosin"}')
