"""Data larger than memory: HDF5 rows read per batch and memory-mapped .npy train to the same weights as the
same arrays in memory; statistics in one pass; a child under a small RLIMIT_AS trains on a larger file."""

import os
import resource
import subprocess
import sys

import h5py
import numpy as np
import pytest

from helpers import checkpoint_arrays
from nnctl import run, spec
from nnctl.data.preprocess import _stats, _stream_stats
from nnctl.data.streaming import Rows


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 5)) * [1, 10, 100, 0.1, 3] + [0, 5, -50, 1, 2]).astype(np.float32)
    y = (x[:, 0] + x[:, 1] / 10 > 0.5).astype(np.int64)
    np.savez(root / "d.npz", x=x, y=y)
    with h5py.File(root / "d.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(16, 5))
        f["y"] = y
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    return root


def _train(root, train: str, tag: str, normalize: str, **data) -> dict:
    raw = {
        "name": tag,
        "seed": 3,
        "data": {
            "train": str(root / train),
            "normalize": normalize,
            "validation": {"split": 0.25},
            "subset": 280,
            **data,
        },
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dropout", "rate": 0.1},
                {"type": "Dense", "units": 2, "activation": "softmax"},
            ]
        },
        "train": {"loss": "sparse_categorical_crossentropy", "epochs": 3, "batch_size": 16, "metrics": ["accuracy"]},
        "output": {"checkpoint": str(root / f"{tag}.h5"), "run_dir": str(root / f"{tag}.run")},
    }
    run.train(spec.validate(raw, "test"))
    return checkpoint_arrays(root / f"{tag}.h5")


@pytest.mark.parametrize("normalize", ["none", "minmax"])
def test_streamed_training_gives_exactly_the_in_memory_weights(files, normalize):
    memory = _train(files, "d.npz", f"mem-{normalize}", normalize)
    h5 = _train(files, "d.h5", f"h5-{normalize}", normalize, stream="batches")
    npy = _train(files, "x.npy", f"npy-{normalize}", normalize, stream="mmap", y="y.npy")
    assert memory.keys() == h5.keys() == npy.keys()
    for k in memory:
        np.testing.assert_array_equal(h5[k], memory[k], err_msg=k)
        np.testing.assert_array_equal(npy[k], memory[k], err_msg=k)


def test_standard_normalisation_streamed_equals_in_memory_to_rounding(files):
    memory = _train(files, "d.npz", "mem-std", "standard")
    h5 = _train(files, "d.h5", "h5-std", "standard", stream="batches")
    for k in memory:
        np.testing.assert_allclose(h5[k], memory[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_one_pass_statistics(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(loc=[3.0, -1e4, 0.0], scale=[1.0, 50.0, 1e-3], size=(10_000, 3))
    rows = Rows(x)
    rescaled = lambda a: a  # noqa: E731
    shift, scale = _stream_stats(rows, "standard", rescaled)
    np.testing.assert_allclose(shift, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scale, x.std(axis=0), rtol=1e-10)
    # small blocks: the combination of many partial results, not one block
    shift_b, scale_b = _stream_stats(_Blocks(x, 7), "standard", rescaled)
    np.testing.assert_allclose(shift_b, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scale_b, x.std(axis=0), rtol=1e-10)
    lo, span = _stream_stats(_Blocks(x, 7), "minmax", rescaled)
    want_lo, want_span = _stats(x, "minmax")
    assert lo.tobytes() == want_lo.tobytes() and span.tobytes() == want_span.tobytes()


class _Blocks(Rows):
    def __init__(self, x, n):
        super().__init__(x)
        self.n = n

    def chunks(self, rows=None, raw=False):
        return super().chunks(self.n, raw)


def test_rows_read_like_the_array(files):
    x = np.load(files / "x.npy")
    with h5py.File(files / "d.h5") as f:
        for rows in (Rows(f["x"]), Rows(np.load(files / "x.npy", mmap_mode="r"))):
            idx = np.array([5, 3, 3, 299, 0, 17])
            np.testing.assert_array_equal(np.take(rows, idx, axis=0), x[idx])
            out = np.empty((len(idx), 5), np.float32)
            np.take(rows, idx, axis=0, out=out)
            np.testing.assert_array_equal(out, x[idx])
            np.testing.assert_array_equal(rows[10:40:3], x[10:40:3])
            sub = rows.subset([40, 2, 7])
            assert sub.shape == (3, 5)
            np.testing.assert_array_equal(sub[0:3], x[[2, 7, 40]])
            scaled = sub.mapped(lambda a: a * 2, np.float64)
            assert scaled[0:3].dtype == np.float64
            np.testing.assert_array_equal(scaled[0:3], x[[2, 7, 40]] * 2)


def test_chunk_shuffle_order_is_a_permutation_in_blocks(files):
    with h5py.File(files / "d.h5") as f:
        rows = Rows(f["x"], shuffle_buffer=32)
        assert rows.block_rows == 16  # the HDF5 chunk
        order = rows.epoch_order(np.random.default_rng(0))
        assert sorted(order.tolist()) == list(range(300))
        # every window of 32 positions holds rows of at most 3 chunks (2, or 3 where the last chunk is short)
        for i in range(0, 300, 32):
            assert len(set((order[i : i + 32] // 16).tolist())) <= 3
        assert not np.array_equal(order, np.arange(300))
        unshuffled = Rows(f["x"]).epoch_order(np.random.default_rng(5))
        np.testing.assert_array_equal(unshuffled, np.random.default_rng(5).permutation(300))


LIMIT_MIB = 320  # the child's whole address space; the file below is about three times that


CHILD_SPEC = """
seed = 0
[data]
train = "big.h5"
stream = "batches"
normalize = "standard"
[[model.layers]]
type = "Dense"
units = 1
[train]
loss = "mse"
epochs = 1
batch_size = 2048
shuffle = false
[output]
checkpoint = "big-model.h5"
"""


@pytest.mark.slow
def test_training_under_an_address_space_limit_smaller_than_the_file(tmp_path):
    rows, feats = 240_000, 1024  # float32: 983 MB of inputs, 3 times the limit
    rng = np.random.default_rng(0)
    block = rng.standard_normal((4096, feats), dtype=np.float32)
    w = rng.normal(size=feats).astype(np.float32)
    with h5py.File(tmp_path / "big.h5", "w") as f:
        dx = f.create_dataset("x", (rows, feats), dtype="f4", chunks=(1024, feats))
        dy = f.create_dataset("y", (rows,), dtype="f4")
        for s in range(0, rows, len(block)):
            n = min(len(block), rows - s)
            dx[s : s + n] = block[:n] + np.float32(s % 7)
            dy[s : s + n] = block[:n] @ w
    size = (tmp_path / "big.h5").stat().st_size
    assert size > 2.9 * (LIMIT_MIB << 20)
    (tmp_path / "s.toml").write_text(CHILD_SPEC)
    limit = LIMIT_MIB << 20
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    # the child records its own peak RSS (VmHWM: ru_maxrss would include the forked test process before exec)
    child = (
        "import atexit, runpy, sys\n"
        "def hwm():\n"
        "    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "    open('hwm.txt', 'w').write(peak)\n"
        "atexit.register(hwm)\n"
        "sys.argv = ['nnctl', 'train', 's.toml', '--quiet']\n"
        "runpy.run_module('nnctl', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "big-model.h5").exists()
    peak = int((tmp_path / "hwm.txt").read_text()) * 1024
    assert peak < limit


class _Counting(Rows):
    """Rows that record every physical row read."""

    def __init__(self, source, log):
        super().__init__(source)
        self.log = log

    def _view(self, index, transform, dtype):
        return self

    def _read(self, idx, raw=False):
        self.log.extend(idx.tolist())
        return super()._read(idx, raw)


def _trainer(rank: int):
    from nnctl import losses, optimizers
    from nnctl.build import build_model
    from nnctl.strategy import DataParallel
    from nnctl.train import Trainer

    raw = {
        "data": {"train": "x"},
        "model": {"layers": [{"type": "Dense", "units": 2, "activation": "softmax"}]},
        "train": {"loss": "sparse_categorical_crossentropy", "batch_size": 16, "epochs": 1},
    }
    s = spec.validate(raw, "test")
    model = build_model(s, (5,), 0)
    model.to_device()
    return Trainer(
        model,
        losses.get("sparse_categorical_crossentropy"),
        optimizers.get("sgd"),
        s.train,
        "sparse",
        2,
        0,
        strategy=DataParallel(_NoExchange(rank, 2)),
    )


class _NoExchange:
    """Collectives of one rank without the others: the row sharing alone (no gradients or logs exchanged)."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def grad_hook(self, flat_grads):
        pass

    def reduce_hook(self, values):
        return values

    def gather_hook(self, a):
        return a

    def sync_rngs(self, states):
        return states

    def epoch_logs(self):
        return {}

    def agree_stop(self, local):
        return local


def test_each_rank_reads_only_its_share_of_each_batch(files):
    """The trainer's data-parallel slicing on streamed rows: two ranks read disjoint rows covering the epoch."""
    with h5py.File(files / "d.h5") as f:
        y = f["y"][()]
        reads = {}
        for rank in (0, 1):
            log: list[int] = []
            trainer = _trainer(rank)
            trainer.run_epoch(_Counting(f["x"], log), y)
            reads[rank] = log
    assert not set(reads[0]) & set(reads[1])
    assert sorted(reads[0] + reads[1]) == list(range(300))
    assert abs(len(reads[0]) - len(reads[1])) <= 19  # ragged batches split as evenly as they can


def test_image_folder_decodes_in_parallel_as_in_sequence(tmp_path, monkeypatch):
    from PIL import Image

    from nnctl.data import images
    from nnctl.errors import DataError

    rng = np.random.default_rng(0)
    files = []
    for i in range(24):
        p = tmp_path / f"{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (9 + i % 3, 11, 3), dtype=np.uint8)).save(p)
        files.append(p)
    got = {}
    for threads in (1, 4):
        monkeypatch.setattr(images, "DECODE_THREADS", threads)
        got[threads] = images.read_images(files, "rgb", (8, 8))
    np.testing.assert_array_equal(got[1], got[4])
    assert got[4].shape == (24, 8, 8, 3)
    for bad in (5, 20):  # truncated after the header: only decoding finds out
        files[bad].write_bytes(files[bad].read_bytes()[:60])
    for threads in (1, 4):
        monkeypatch.setattr(images, "DECODE_THREADS", threads)
        with pytest.raises(DataError, match="05.png: not a readable image"):
            images.read_images(files, "rgb", (8, 8))
