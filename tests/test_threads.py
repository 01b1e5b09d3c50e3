"""The slice pool (nnctl/threads.py): every slice runs once, errors come back, OpenBLAS is held at one thread
only inside ``held()`` and restored, and results do not depend on the worker count: layers and a whole
model trained with 1 and with 3 workers give the same bits (the slices are the layer's, the sums formed
in slice order), and a product cut into row blocks equals the uncut product."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from helpers import weights_after_steps
from nnctl import backend as B
from nnctl import threads
from nnctl.errors import BackendError
from nnctl.layers import layer_class
from nnctl.testing import build_layer


@pytest.fixture(autouse=True)
def _cpu_and_restored_workers(device_from_environment):
    if B.xp is not np:
        pytest.skip("the slice pool is for the CPU backend (one worker on a GPU)")
    yield
    threads.set_workers(None)


def blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_every_slice_runs_once_on_a_worker_that_owns_its_run():
    threads.set_workers(3)
    seen = []
    lock = threading.Lock()

    def task(worker, i):
        with lock:
            seen.append((worker, i, threading.get_ident()))

    with threads.held():
        assert threads.workers_for(10) == 3
        threads.run(10, task)
    assert sorted(i for _, i, _ in seen) == list(range(10))
    by_worker = {}
    for worker, i, _ in seen:
        by_worker.setdefault(worker, []).append(i)
    # worker w of 3 runs the contiguous slices 10*w//3 ..< 10*(w+1)//3, on one thread
    assert {w: sorted(v) for w, v in by_worker.items()} == {0: [0, 1, 2], 1: [3, 4, 5], 2: [6, 7, 8, 9]}
    # worker 0 is the calling thread; a pool thread may run two workers' runs one after the other
    assert {ident for w, _, ident in seen if w == 0} == {threading.get_ident()}
    assert threading.get_ident() not in {ident for w, _, ident in seen if w > 0}


def test_outside_held_slices_run_in_order_on_the_calling_thread():
    threads.set_workers(3)
    seen = []
    threads.run(5, lambda w, i: seen.append((w, i, threading.get_ident())))
    assert seen == [(0, i, threading.get_ident()) for i in range(5)]
    assert threads.workers_for(5) == 1


def test_a_worker_error_is_raised_after_every_slice_has_stopped():
    threads.set_workers(2)
    done = []

    def task(worker, i):
        if i == 3:
            raise ZeroDivisionError("slice 3")
        done.append(i)

    with threads.held(), pytest.raises(ZeroDivisionError, match="slice 3"):
        threads.run(4, task)
    assert sorted(done) == [0, 1, 2]


def test_held_puts_openblas_on_one_thread_and_restores_it():
    threads.set_workers(2)
    before = blas_threads()
    with threads.held():
        assert set(blas_threads()) == {1}
        with threads.held():  # nested: still one thread, and the outer block restores
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before
    threads.set_workers(1)
    with threads.held():  # one worker: nothing to hold
        assert blas_threads() == before


def test_nnctl_threads_must_be_a_positive_integer(monkeypatch):
    monkeypatch.setenv("NNCTL_THREADS", "two")
    monkeypatch.setattr(threads, "_workers", None)
    with pytest.raises(BackendError, match="NNCTL_THREADS must be a positive integer, found 'two'"):
        threads.workers()
    monkeypatch.setenv("NNCTL_THREADS", "5")
    monkeypatch.setattr(threads, "_workers", None)
    assert threads.workers() == 5


def test_a_product_cut_into_row_blocks_is_the_uncut_product(monkeypatch):
    monkeypatch.setattr(threads, "_MATMUL_MIN_WORK", 1)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 50)).astype(np.float32)
    b = rng.standard_normal((50, 23)).astype(np.float32)
    threads.set_workers(3)
    with threads.held():
        cut = threads.matmul(a, b)
        cut_t = threads.matmul(a.T[:40].T[:, :40].T, a[:, :23])  # a transposed view, as Dense's x^T g
    np.testing.assert_array_equal(cut, a @ b)
    np.testing.assert_array_equal(cut_t, a.T[:40].T[:, :40].T @ a[:, :23])


LAYERS = [
    ("Conv2D", {"filters": 6, "kernel_size": 3, "padding": "same"}, (9, 8, 3)),  # im2col chunks
    ("Conv2D", {"filters": 5, "kernel_size": 3, "strides": 2}, (9, 9, 1)),  # the direct adjoints (9 wide)
    ("Conv1D", {"filters": 4, "kernel_size": 2, "dilation_rate": 2}, (11, 5)),
    ("Conv2D", {"filters": 3, "kernel_size": 1, "use_bias": False}, (5, 4, 6)),  # the 1x1 view: one slice
    ("MaxPooling2D", {"pool_size": 2}, (8, 6, 3)),
    ("MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}, (7, 7, 2)),
    ("MaxPooling1D", {"pool_size": 2}, (9, 4)),
    ("Dense", {"units": 7}, (30,)),
]


@pytest.mark.parametrize("type_name,config,shape", LAYERS)
def test_layers_give_the_same_bits_with_one_and_three_workers(monkeypatch, type_name, config, shape):
    monkeypatch.setattr(threads, "_MATMUL_MIN_WORK", 1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((13, *shape)).astype(np.float32)  # 13: ragged slices of 2
    results = []
    for count in (1, 3):
        threads.set_workers(count)
        layer = layer_class(type_name)(name="l", **config)
        build_layer(layer, [shape], np.float32, np.random.default_rng(0), np.random.default_rng(0))
        layer.params = {k: v.astype(np.float32) for k, v in layer.params.items()}
        layer.init_grads()
        with threads.held():
            y, cache = layer.forward(x, training=True)
            g = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
            (dx,) = layer.backward(g, cache)
        results.append((y, dx, {k: v.copy() for k, v in layer.grads.items()}))
    (y1, dx1, g1), (y3, dx3, g3) = results
    np.testing.assert_array_equal(y3, y1)
    np.testing.assert_array_equal(dx3, dx1)
    for k in g1:
        np.testing.assert_array_equal(g3[k], g1[k])


def test_a_cnn_trained_with_one_and_three_workers_ends_with_the_same_weights():
    entries = [
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 6, "kernel_size": 3, "activation": "relu", "padding": "same"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 3, "activation": "softmax"},
    ]
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((20, 12, 12, 1)).astype(np.float32) for _ in range(3)]
    ys = [rng.integers(0, 3, 20) for _ in range(3)]
    finals = []
    for count in (1, 3):
        threads.set_workers(count)
        finals.append(weights_after_steps(entries, xs, ys))
    assert not np.array_equal(finals[0], 0)
    np.testing.assert_array_equal(finals[1], finals[0])
