"""Hostile inputs against the real command: each case exits with its code, one ``error:`` line, no traceback,
within a time bound (the subprocess timeout) and a peak-RSS bound measured in the child.

Every input is generated here: encodings, corrupt and bomb archives, crafted checkpoints, YAML bombs, FIFOs.
"""

import gzip
import io
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib

import h5py
import numpy as np
import pytest

from helpers import ROOT, SPECS

IRIS = ROOT / "examples/data/iris.csv"
SECRET = "SECRET-CONTENT-7f3a"  # planted in files a checkpoint points at; must never be printed
MAX_RSS_MB = 1024  # numpy + h5py + the CLI take about 150 MB; every bomb here would need gigabytes
# run the CLI and report the child's own peak RSS as a last stderr line
WRAP = (
    "import resource, runpy, sys\nsys.argv[0] = 'nnctl'\ntry:\n    runpy.run_module('nnctl', run_name='__main__')\n"
    "finally:\n    sys.stderr.write('\\nmaxrss_kb %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


# a small fresh Python starts the CLI: a child forked straight from pytest inherits pytest's peak RSS in its own
# ru_maxrss (tests/child_rss.py), which the whole suite grows past MAX_RSS_MB
LAUNCH = "import subprocess, sys\nsys.exit(subprocess.run([sys.executable, '-c', *sys.argv[1:]]).returncode)"


def nnctl(*args, input=None, cwd=None, timeout=60):
    p = subprocess.run(
        [sys.executable, "-c", LAUNCH, WRAP, *map(str, args)],
        input=input,
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
    )
    err = p.stderr.decode(errors="replace")
    body, _, rss = err.rpartition("maxrss_kb ")
    return p.returncode, p.stdout.decode(errors="replace"), body.rstrip("\n"), int(rss.split()[0]) // 1024


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("iris") / "iris.h5"
    code, _, err, _ = nnctl("train", SPECS / "iris_mlp.toml", "--epochs", "2", "--out", out, "--quiet")
    assert code == 0, err
    return out


def spec(tmp, train, extra=""):
    """A tiny classifier spec on ``train`` (one epoch), written next to it."""
    path = tmp / "s.toml"
    path.write_text(
        f'[data]\ntrain = "{train}"\n{extra}\n[[model.layers]]\ntype = "Dense"\nunits = 3\n'
        'activation = "softmax"\n[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\n'
        f'[output]\ncheckpoint = "{tmp / "out.h5"}"\n'
    )
    return path


def yaml_spec(tmp, body):
    path = tmp / "s.yaml"
    path.write_text(body)
    return path


# -- generators ----------------------------------------------------------------------------------
def idx_bytes(shape, payload: bytes) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + payload


def png_with_size(path, width, height):
    """A valid 1x1 PNG whose IHDR then claims ``width`` x ``height`` (CRC fixed): only the header is big."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    raw = bytearray(buf.getvalue())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    raw[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr : ihdr + 17])))
    path.write_bytes(bytes(raw))


def npy_header(shape, dtype="<f8") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def crafted(ckpt, tmp, edit):
    """A copy of the iris checkpoint changed by ``edit(h5file, tmp)``."""
    out = tmp / "crafted.h5"
    shutil.copy(ckpt, out)
    with h5py.File(out, "r+") as f:
        edit(f, tmp)
    return out


def replace(f, name, **kw):
    del f[name]
    return f.create_dataset(name, **kw)


# -- the cases: (name, build(tmp, ckpt) -> (args, stdin), exit code, text the error line must contain) -----
def _latin1_training(tmp, ckpt):
    (tmp / "l1.csv").write_bytes("a,b,caf\xe9\n1,2,x\n".encode("latin-1"))
    return ["train", spec(tmp, tmp / "l1.csv")], None


def _file(name, data):
    def build(tmp, ckpt):
        (tmp / name).write_bytes(data(tmp) if callable(data) else data)
        return ["predict", ckpt, tmp / name], None

    return build


def _png_bytes(tmp):
    png_with_size(tmp / "tiny.png", 1, 1)
    return (tmp / "tiny.png").read_bytes()


def _long_field(tmp, ckpt):
    (tmp / "long.csv").write_text("a,b,c,d,species\n" + "1," * 4 + "x" * 200_000 + "\n")
    return ["train", spec(tmp, tmp / "long.csv")], None


def _idx_pair(tmp, images: bytes, labels: bytes):
    (tmp / "t-images-idx3-ubyte.gz").write_bytes(images)
    (tmp / "t-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes((2,), b"\x00\x01")))
    return ["train", spec(tmp, tmp / "t-images-idx3-ubyte.gz")], None


def _corrupt_gzip_idx(tmp, ckpt):
    good = gzip.compress(idx_bytes((2, 2, 2), bytes(8)))
    return _idx_pair(tmp, good[:12] + b"\xff" * 20 + good[-8:], b"")


def _gzip_idx_bomb(tmp, ckpt):  # header promises 8 bytes, then 400 MB of zeros (400 KB compressed)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [z.compress(idx_bytes((2, 2, 2), b""))]
    chunk = bytes(1 << 20)
    parts += [z.compress(chunk) for _ in range(400)]
    return _idx_pair(tmp, b"".join(parts) + z.flush(), b"")


def _idx_huge_dims(tmp, ckpt):
    (tmp / "h-images-idx3-ubyte").write_bytes(idx_bytes((1 << 30, 1 << 10, 1 << 10), b""))
    return ["train", spec(tmp, tmp / "h-images-idx3-ubyte")], None


def _truncated_npz(tmp, ckpt):
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((10, 4)), y=np.zeros(10))
    (tmp / "t.npz").write_bytes(buf.getvalue()[:300])
    return ["train", spec(tmp, tmp / "t.npz", 'x = "x"\ny = "y"')], None


def _npz_declared_bomb(tmp, ckpt):  # a member whose .npy header declares 16 GiB
    with zipfile.ZipFile(tmp / "b.npz", "w") as z:
        z.writestr("x.npy", npy_header((1 << 31,)))
        z.writestr("y.npy", npy_header((2,)) + bytes(16))
    return ["train", spec(tmp, tmp / "b.npz", 'x = "x"\ny = "y"')], None


def _npz_zip_bomb(tmp, ckpt):  # 512 MiB of zeros, about 500 KB compressed
    n = 64 << 20
    with zipfile.ZipFile(tmp / "z.npz", "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as m:
            m.write(npy_header((n,)))
            chunk = bytes(8 << 20)
            for _ in range(64):
                m.write(chunk)
        z.writestr("y.npy", npy_header((2,)) + bytes(16))
    return ["train", spec(tmp, tmp / "z.npz", 'x = "x"\ny = "y"')], None


def _empty_npy(tmp, ckpt):
    (tmp / "e.npy").write_bytes(b"")
    return ["predict", ckpt, tmp / "e.npy"], None


def _narrow_npy(tmp, ckpt):
    np.save(tmp / "n.npy", np.ones((3, 1)))
    return ["predict", ckpt, tmp / "n.npy"], None


def _stdin(data):
    return lambda tmp, ckpt: (["predict", ckpt, "-"], data)


def _fifo(verb):
    def build(tmp, ckpt):
        os.mkfifo(tmp / "pipe.csv")
        if verb == "train":
            return ["train", spec(tmp, tmp / "pipe.csv")], None
        return ["predict", ckpt, tmp / "pipe.csv"], None

    return build


def _ckpt(edit):
    return lambda tmp, ckpt: (["predict", crafted(ckpt, tmp, edit), IRIS], None)


def _spec_int(f, tmp):
    replace(f, "spec", data=7)


def _spec_group(f, tmp):
    del f["spec"]
    f.create_group("spec")


def _weights_dataset(f, tmp):
    layer = next(iter(f["weights"]))
    del f["weights"][layer]
    f["weights"].create_dataset(layer, data=np.zeros(3))


def _link_loop(f, tmp):
    f["weights"]["loop"] = h5py.SoftLink("/weights/loop")


def _scalar_history(f, tmp):
    replace(f, "history/loss", data=1.5)


def _external_link(f, tmp):
    with h5py.File(tmp / "other.h5", "w") as o:
        o.create_dataset("classes", data=np.array([SECRET] * 3, dtype=object), dtype=h5py.string_dtype())
    del f["preprocessing/classes"]
    f["preprocessing/classes"] = h5py.ExternalLink(str(tmp / "other.h5"), "/classes")


def _external_storage(f, tmp):
    (tmp / "system-file").write_bytes((SECRET + "\n").encode() * 4)
    replace(f, "preprocessing/classes", shape=(3,), dtype="S8", external=[(str(tmp / "system-file"), 0, 24)])


def _virtual(f, tmp):
    with h5py.File(tmp / "src.h5", "w") as o:
        o.create_dataset("d", data=np.zeros(3))
    layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(tmp / "src.h5"), "d", shape=(3,))
    del f["history/loss"]
    f["history"].create_virtual_dataset("loss", layout)


def _declared_16gib(f, tmp):
    layer = next(iter(f["weights"]))
    param = next(iter(f["weights"][layer]))
    replace(f, f"weights/{layer}/{param}", shape=(1 << 17, 1 << 14), dtype="f8", chunks=(1024, 1024))


def _short_classes(f, tmp):
    replace(f, "preprocessing/classes", data=np.array(["a"], dtype=object), dtype=h5py.string_dtype())


def _not_hdf5(tmp, ckpt):
    (tmp / "fake.h5").write_bytes(b"not an hdf5 file at all")
    return ["predict", tmp / "fake.h5", IRIS], None


def _truncated_ckpt(tmp, ckpt):
    (tmp / "cut.h5").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return ["evaluate", tmp / "cut.h5"], None


def _yaml(body):
    return lambda tmp, ckpt: (["train", yaml_spec(tmp, body)], None)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)


def _big_png(tmp, ckpt):
    for c in ("a", "b"):
        (tmp / "imgs" / c).mkdir(parents=True)
        png_with_size(tmp / "imgs" / c / "big.png", 12_000, 10_000)
    return ["train", spec(tmp, tmp / "imgs")], None


def _dir_out(tmp, ckpt):
    (tmp / "d").mkdir()
    return ["train", SPECS / "iris_mlp.toml", "--out", tmp / "d"], None


def _args(*args):
    return lambda tmp, ckpt: ([a.format(ckpt=ckpt, iris=IRIS, spec=SPECS / "iris_mlp.toml") for a in args], None)


CASES = [
    ("latin-1 training CSV", _latin1_training, 2, "not UTF-8"),
    ("UTF-16 CSV to predict", _file("u16.csv", "a,b\n1,2\n".encode("utf-16")), 2, "UTF-16"),
    ("gzip named .csv", _file("g.csv", gzip.compress(b"a,b\n1,2\n")), 2, "gzip"),
    ("PNG named .csv", _file("p.csv", _png_bytes), 2, "PNG"),
    ("binary stdin", _stdin(b"\xff\xfe\x00\x81" * 64), 2, "stdin"),
    ("CSV field over 128 KiB", _long_field, 2, "line 2"),
    ("corrupt gzip IDX", _corrupt_gzip_idx, 2, "gzip"),
    ("gzip IDX bomb", _gzip_idx_bomb, 2, "promises 8 bytes"),
    ("IDX declaring 2^50 bytes", _idx_huge_dims, 2, "promises"),
    ("truncated npz", _truncated_npz, 2, "t.npz"),
    ("npz member declaring 16 GiB", _npz_declared_bomb, 2, "declares shape"),
    ("npz zip bomb", _npz_zip_bomb, 2, "zip bomb"),
    ("empty .npy", _empty_npy, 2, "e.npy"),
    ("(N, 1) .npy for 4 features", _narrow_npy, 2, "4 features"),
    ("[1, 2] on stdin", _stdin(b"[1, 2]\n"), 2, "4 features"),
    ("[5] on stdin", _stdin(b"[5]\n"), 2, "4 features"),
    ("FIFO as training file", _fifo("train"), 2, "not a regular file"),
    ("FIFO as predict input", _fifo("predict"), 2, "not a regular file"),
    ("/spec an int", _ckpt(_spec_int), 2, "/spec"),
    ("/spec a group", _ckpt(_spec_group), 2, "/spec"),
    ("/weights/<layer> a dataset", _ckpt(_weights_dataset), 2, "/weights/"),
    ("soft-link loop", _ckpt(_link_loop), 2, "soft link"),
    ("scalar history", _ckpt(_scalar_history), 2, "/history/loss"),
    ("external link", _ckpt(_external_link), 2, "external link"),
    ("external raw storage", _ckpt(_external_storage), 2, "external file"),
    ("virtual dataset", _ckpt(_virtual), 2, "virtual dataset"),
    ("35 KB file declaring 16 GiB", _ckpt(_declared_16gib), 2, "more than the whole file"),
    ("classes shorter than outputs", _ckpt(_short_classes), 2, "/preprocessing/classes"),
    ("not HDF5", _not_hdf5, 2, "fake.h5"),
    ("truncated checkpoint", _truncated_ckpt, 2, "cut.h5"),
    ("a spec passed to evaluate", _args("evaluate", "{spec}"), 2, "a spec, not a checkpoint; train it first"),
    ("YAML alias bomb", _yaml(BOMB), 2, "aliases expand"),
    ("YAML recursive alias", _yaml("a: &a [*a]\n"), 2, "recursive alias"),
    ("YAML !!binary", _yaml("name: !!binary aGVsbG8=\n"), 2, "!!binary"),
    ("YAML !!set", _yaml("name: !!set {a, b}\n"), 2, "!!set"),
    ("YAML date", _yaml("name: 2024-01-01\n"), 2, "date"),
    ("two 120-megapixel PNGs", _big_png, 2, "pixels"),
    ("--out a folder", _dir_out, 2, "is a folder"),
    ("--seed 2^64", _args("train", "{spec}", "--seed", "18446744073709551616"), 2, "--seed"),
    ("--epochs 2^70", _args("train", "{spec}", "--epochs", str(2**70)), 2, "--epochs"),
    ("--set seed=2^64", _args("train", "{spec}", "--set", "seed=18446744073709551616"), 2, "seed"),
    ("unknown option", _args("train", "{spec}", "--bogus"), 2, "--bogus"),
    ("missing argument", _args("predict"), 2, "Missing argument"),
    ("bad option value", _args("train", "{spec}", "--epochs", "many"), 2, "--epochs"),
]


@pytest.mark.parametrize("build,code,text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input(build, code, text, tmp_path, ckpt):
    args, stdin = build(tmp_path, ckpt)
    got, out, err, rss_mb = nnctl(*args, input=stdin, cwd=tmp_path)
    assert got == code, err
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert text in lines[0], lines[0]
    assert SECRET not in out + err
    assert rss_mb < MAX_RSS_MB, f"peak RSS {rss_mb} MB"


def test_version_and_short_help():
    code, out, err, _ = nnctl("--version")
    assert code == 0 and out.strip() == "nnctl 0.1.0" and not err.strip()
    code, out, _, _ = nnctl("train", "-h")
    assert code == 0 and "--out" in out


def test_internal_error_is_one_line_and_traceback_only_under_debug(monkeypatch, tmp_path):
    """A bug (here an injected ZeroDivisionError) is exit 1 with a short line; NNCTL_DEBUG=1 adds the traceback."""
    script = (
        "import sys, nnctl.run\n"
        "def boom(*a, **k):\n    raise ZeroDivisionError('x' * 500)\n"
        "nnctl.run.evaluate = boom\nsys.argv = ['nnctl', 'evaluate', 'c.h5']\n"
        "from nnctl.cli.main import run\nrun()\n"
    )
    for debug in ("", "1"):
        env = dict(os.environ, NNCTL_DEBUG=debug)
        p = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path
        )
        assert p.returncode == 1
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("error: internal error (ZeroDivisionError: 'xxx") and "please report" in last
        assert len(last) < 250  # the 500-character message is cut short
        assert ("Traceback" in p.stderr) == bool(debug)
