"""Recurrent cells and the one time loop they share (forward over time, BPTT backward over time).

What one forward records is a ``Tape`` (typed slots, one meaning each). Inside the loop the gates are
time-major and **block-major**: ``Z`` (T, G, N, U) starts as x_t W + b for every step (one matmul before
the loop, written into that layout with the bias in one pass), and each step adds h_{t-1} R in place
(one batched product with the kernel's G blocks, ``Wr`` (G, U, U)). A step's gate block ``Z[t, j]`` is
then one contiguous (N, U) array: elementwise calls on it cost a third of those on a column slice of an
(N, G*U) row-major array (0.9-1.4 against 2.5-4.2 us for LSTM(64) at batch 64, measured). ``H``
(T+1, N, U) holds h_0..h_T (``C`` the LSTM cell states). The gradients ``dZ``/``dRec`` stay row-major
(T, N, G*U), so dh_{t-1} = dz_t R^T is one product per step and, after the loop, dW = X^T dZ,
dR = H_{0..T-1}^T dRec and dx = dZ W^T are three whole-sequence matmuls (in recurrent.py). The stored
weights keep Keras's layout; only views and copies of them see the block-major one.

Before the backward loop each cell turns its tape into per-step coefficients (dh_t -> dz_t is then a
couple of multiplies). A fused LSTM in training records them during the forward instead, step by step
while the step's arrays are in cache.

With the default activations (tanh, sigmoid) a cell is *fused*: sigmoid(z) = 0.5 + 0.5 tanh(z / 2),
so the layer pre-scales the sigmoid gates' weight columns by ``scale`` = 0.5 and one in-place tanh
plus an affine step turns all gate blocks into activations, stored over Z itself.

A step's recurrent product runs in row pieces small enough that OpenBLAS keeps it on the calling
thread (``row_parts``): two threads meeting at every step cost far more than the product on a busy
machine.

Masks (``Mb`` (T, N, 1) bool): a masked step keeps the previous state, h_t = h_{t-1} (c_t = c_{t-1});
the backward coefficients of masked rows are zeroed so their gradients pass straight to t-1.

With the compiled kernels active (``kernels.active()``, nnctl/kernels/rnn.py) and a cell's default
activations (``Cell.kernel``), run/run_back do each step as one product h_{t-1} Rk (N, G*U) and one kernel
call for all its elementwise work (``_run_kernel``, ``_run_back_kernel``); the cells' xp steps stay the
path for the GPU and other activations, and the reference the kernels are tested against.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from nnctl import backend as B
from nnctl import kernels
from nnctl.ops import activations


class Fn:
    """An elementwise activation that writes into ``out`` (sigmoid via tanh), and its derivative f'(z)."""

    def __init__(self, name: str):
        self.name = activations.canonical(name)
        self.generic = activations.get(self.name)
        if self.name == "softmax":
            raise ValueError("softmax is not elementwise: a recurrent cell needs an elementwise activation")

    def __call__(self, z, out):
        xp = B.xp
        if self.name == "tanh":
            return xp.tanh(z, out=out)
        if self.name == "sigmoid":
            xp.multiply(z, 0.5, out=out)
            xp.tanh(out, out=out)
            out *= 0.5
            out += 0.5
            return out
        out[...] = self.generic.forward(z)
        return out

    def deriv(self, z, y, out):
        """out = f'(z) elementwise, given z and y = f(z) (tanh and sigmoid read y only)."""
        xp = B.xp
        if self.name == "tanh":
            xp.multiply(y, y, out=out)
            return xp.subtract(1, out, out=out)
        if self.name == "sigmoid":
            xp.subtract(1, y, out=out)
            return xp.multiply(out, y, out=out)
        out[...] = self.generic.backward(z, y, xp.ones_like(y))
        return out


Array = Any  # a backend array (numpy.ndarray or cupy.ndarray)


def _release(pool: list, bufs: dict) -> None:
    if len(pool) < 2:
        pool.append(bufs)


class Tape:
    """What one forward of a recurrent layer records for its BPTT backward, one meaning per slot.

    Shapes: T steps, N rows, F input features, U units, G gate blocks (cell.G). Its big arrays come from
    the owning layer's ``pool`` (``empty``) and go back to it when the tape is dropped, so a training loop
    reuses them instead of allocating (and page-faulting) megabytes per batch; returned outputs and
    gradients are never pool arrays. Slots a cell does not use stay None.
    """

    __slots__ = (
        "__weakref__",
        "bufs",
        "drop",
        "X",
        "scale",
        "Z",
        "n_init",
        "Wr",
        "brec",
        "Mb",
        "parts",
        "back_parts",
        "hWr",
        "H",
        "C",
        "A",
        "shift",
        "scale2",
        "cU",
        "gU",
        "dHp",
        "TC",
        "HR",
        "WrT",
        "M",
        "keep",
        "dZ",
        "dRec",
        "D",
        "E",
        "dZ4",
        "Ec",
        "Fm",
        "Ez",
        "Eh",
        "Er",
        "Zm",
        "Rk",
        "Q",
        "P",
        "K",
    )

    bufs: dict[str, Array]  # pool buffers by name, reused across batches
    # -- recorded by RNN.forward (recurrent.py)
    drop: Array | None  # (N, 1, F) input dropout multiplier: 0 or 1/(1-rate); None without dropout
    X: Array  # (T, N, F) the (dropped-out) inputs, time-major, in the order the steps run
    scale: Array | None  # (G, 1, U) fused cells: 0.5 on sigmoid-gate blocks, 1 on the tanh block; else None
    Z: Array  # (T, G, N, U) x_t W + b, then + h_{t-1} R per step; fused cells overwrite it with the gates
    n_init: int  # initial-state inputs the forward got (0 or cell.n_states)
    # -- recorded by run() and the cell's alloc/step
    Wr: Array  # (G, U, U) recurrent kernel by gate block, as used (scaled when fused)
    brec: Array | None  # (G, 1, U) GRU's recurrent bias by block, as used (bias row 1, scaled when fused)
    Mb: Array | None  # (T, N, 1) bool, True = a real step; None without a mask
    parts: list[slice] | None  # row pieces of each step's forward product, per gate block (row_parts)
    back_parts: list[slice] | None  # row pieces of each step's backward product dz_t R^T
    hWr: Array  # (G, N, U) scratch: the current step's h_{t-1} Wr
    H: Array  # (T+1, N, U) h_0 .. h_T
    C: Array | None  # (T+1, N, U) LSTM cell states c_0 .. c_T; None for other cells
    A: Array  # (T, G, N, U) gate activations (Z itself when fused)
    shift: Array | None  # (G, 1, U) fused LSTM: 1 - scale, so gate = scale * tanh(z) + shift
    scale2: Array | None  # (G, 1, U) fused LSTM: scale**2, so a'(z) = scale2 - (scale * tanh(scale z))**2
    cU: Array | None  # (N, U) forward scratch of the current step (LSTM i * g, GRU r * rec_h)
    TC: Array | None  # (T, N, U) LSTM act(c_t), before masking
    HR: Array | None  # (T, 3, N, U) GRU h_{t-1} Wr + brec for every step
    # -- recorded by run_back() and the cell's prepare_back/step_back
    WrT: Array  # (G*U, U) the unscaled recurrent kernel, transposed and contiguous
    M: Array | None  # (T, N, 1) Mb as the compute dtype: 1 = real step
    keep: Array | None  # (T, N, 1) 1 - M: where the state passes through unchanged
    dZ: Array  # (T, N, G*U) gradient of x_t W + b
    dRec: Array  # (T, N, G*U) gradient of h_{t-1} R (+ b_rec): dZ itself except for GRU
    gU: Array | None  # (N, U) backward scratch of the current step (LSTM dh * Ec, GRU dh * Zm)
    dHp: Array  # (2, N, U) dh_{t-1} of the step just done and of the one before (the loop alternates)
    D: Array | None  # (T, N, U) SimpleRNN f'(z_t), zero on masked steps
    E: (
        Array | None
    )  # (T, 4, N, U) LSTM: dz_{i,f,g} = dc_t E[t, :3], dz_o = dh_t E[t, 3] (fused training: the forward fills it)
    dZ4: Array | None  # (T, N, 4, U) dZ by gate block
    Ec: Array | None  # (T, N, U) LSTM: d c_t += dh_t Ec (o act'(c_t); fused training: filled by the forward)
    Fm: Array | None  # (T, N, U) LSTM: dc_{t-1} = dc_t Fm (the forget gate; 1 on masked steps)
    Ez: Array | None  # (T, N, U) GRU: dz_z = dh_t Ez
    Eh: Array | None  # (T, N, U) GRU: dz_h = dh_t Eh
    Er: Array | None  # (T, N, U) GRU: dz_r = dz_h Er
    Zm: Array | None  # (T, N, U) GRU: dh_{t-1} += dh_t Zm (the update gate; 1 on masked steps)
    # -- the compiled kernels' path (nnctl/kernels/rnn.py), forward and backward
    Rk: Array | None  # (U, G*U) Wr as one row-major matrix: a step's product is one (N, U) @ (U, G*U)
    Q: Array | None  # (N, G*U) the current step's h_{t-1} Rk
    P: Array | None  # (N, U) the current step's dRec[t] R^T
    K: Array | None  # (N, U) what dh_t carries into dh_{t-1} besides P (0, GRU's z, or 1 on masked rows)

    def __init__(self, pool: list):
        for name in self.__slots__[2:]:
            setattr(self, name, None)
        self.n_init = 0
        self.bufs = pool.pop() if pool else {}
        weakref.finalize(self, _release, pool, self.bufs)

    def empty(self, name: str, shape: tuple, dtype) -> Array:
        """An uninitialised pool buffer ``name`` of this shape and dtype (reused when the last one fits)."""
        a = self.bufs.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype or not isinstance(a, B.xp.ndarray):
            a = self.bufs[name] = B.xp.empty(shape, dtype=dtype)
        return a


class Cell:
    """Base of the recurrent cells: G gate blocks of ``units`` columns, the activations, and the hooks the
    time loop calls (alloc, step, then prepare_back, step_back per step, finish_back)."""

    G = 1  # gate blocks side by side in the kernels' last axis
    n_states = 1  # states carried between steps (LSTM: h and c)
    split_bias = False  # GRU keeps a separate recurrent bias (bias row 1)
    fused = False  # gates computed as one in-place tanh over pre-scaled columns (GatedCell)
    kind = "rnn"  # the name of the cell's compiled steps, nnctl/kernels/rnn.py's <kind>_step, <kind>_back_step
    kernel: str | None = None  # kind, where those steps apply (default activations only), else None

    def __init__(self, units: int, activation: str = "tanh", recurrent_activation: str = "sigmoid"):
        self.units = units
        self.act = Fn(activation)
        self.rec = Fn(recurrent_activation)

    def scale(self, dtype) -> Array | None:
        """Column scale for the fused form (0.5 on sigmoid gates, 1 elsewhere), or None."""
        return None

    def alloc(self, s: Tape, training: bool = False) -> None:
        """Claim the cell's per-sequence buffers on the tape (after run() has set H, C, Z); ``training``: a
        backward will follow, so a cell may record its coefficients during the forward."""
        s.A = s.Z if self.fused else s.empty("A", s.Z.shape, s.Z.dtype)

    def step(self, s: Tape, t: int) -> None:
        """Forward step t: read Z[t], H[t] (C[t]); write H[t+1] (C[t+1]) and what backward needs."""
        raise NotImplementedError

    def prepare_back(self, s: Tape) -> None:
        """Whole-sequence coefficients for step_back, computed once before the backward loop."""
        raise NotImplementedError

    def step_back(self, s: Tape, t: int, dh: Array, dc: Array | None, out: Array) -> tuple[Array, Array | None]:
        """Backward step t: fill dZ[t] (dRec[t]) from dh_t (dc_t); return (dh_{t-1} written into ``out``,
        dc_{t-1}, which may be ``dc`` updated in place)."""
        raise NotImplementedError

    def finish_back(self, s: Tape) -> None:
        """Whole-sequence work after the backward loop (none by default)."""


class SimpleRNNCell(Cell):
    """SimpleRNN cell: h_t = act(x_t W + h_{t-1} R + b). G = 1 gate block."""

    def __init__(self, *args):
        super().__init__(*args)
        self.kernel = self.kind if self.act.name == "tanh" else None

    def step(self, s, t) -> None:
        z = s.Z[t, 0]
        z += rec_matmul(s.H[t], s.Wr, s.hWr, s.parts)[0]
        self.act(z, out=s.H[t + 1])

    def prepare_back(self, s) -> None:
        s.D = self.act.deriv(s.Z[:, 0], s.H[1:], out=s.empty("D", s.H[1:].shape, s.Z.dtype))
        if s.M is not None:
            s.D *= s.M

    def step_back(self, s, t, dh, dc, out):
        dhp = rec_matmul(B.xp.multiply(dh, s.D[t], out=s.dZ[t]), s.WrT, out, s.back_parts)
        if s.M is not None:
            dhp += dh * s.keep[t]
        return dhp, None


class GatedCell(Cell):
    """Base of LSTM and GRU: fused when the activations are the default tanh and sigmoid; gate block 2
    (LSTM's candidate c, GRU's candidate h) is the only tanh block."""

    def __init__(self, *args):
        super().__init__(*args)
        self.fused = self.act.name == "tanh" and self.rec.name == "sigmoid"
        self.kernel = self.kind if self.fused else None

    def scale(self, dtype):
        if not self.fused:
            return None
        k = B.xp.full((self.G, 1, self.units), 0.5, dtype=dtype)
        k[2] = 1
        return k


class LSTMCell(GatedCell):
    """LSTM, Keras gate order i, f, c, o: c_t = f c_{t-1} + i g, h_t = o act(c_t), g = act(z_c)."""

    G = 4
    n_states = 2
    kind = "lstm"

    def alloc(self, s, training=False):
        super().alloc(s, training)
        T, G, N, U = s.Z.shape
        dt = s.Z.dtype
        s.TC = s.empty("TC", (T, N, U), dt)  # act(c_t), before masking
        s.cU = s.empty("cU", (N, U), dt)
        if self.fused:
            s.shift = 1 - s.scale  # sigmoid blocks: 0.5 tanh + 0.5; the c block: tanh itself
            if training:  # the backward's coefficients, computed by each step while its arrays are in cache
                s.scale2 = s.scale * s.scale
                s.E = s.empty("E", s.Z.shape, dt)
                s.Ec = s.empty("Ec", (T, N, U), dt)

    def step(self, s, t):
        xp = B.xp
        z = s.Z[t]  # (4, N, U)
        z += rec_matmul(s.H[t], s.Wr, s.hWr, s.parts)
        e = None
        if self.fused:  # a is z
            xp.tanh(z, out=z)
            z *= s.scale
            if s.E is not None:  # a'(z) = k^2 - (k tanh)^2: sigmoid' for k = 0.5, tanh' for k = 1
                e = xp.multiply(z, z, out=s.E[t])
                xp.subtract(s.scale2, e, out=e)
            z += s.shift
            i, f, g, o = z
        else:
            a = s.A[t]
            self.rec(z[:2], out=a[:2])
            self.act(z[2], out=a[2])
            self.rec(z[3], out=a[3])
            i, f, g, o = a
        c = xp.multiply(f, s.C[t], out=s.C[t + 1])
        c += xp.multiply(i, g, out=s.cU)
        tc = self.act(c, out=s.TC[t])
        xp.multiply(o, tc, out=s.H[t + 1])
        if e is not None:  # E = a'(z) * (g, c_{t-1}, i, act(c_t)) by block; Ec = o act'(c_t)
            e[0] *= g
            e[1] *= s.C[t]
            e[2] *= i
            e[3] *= tc
            ec = xp.multiply(tc, tc, out=s.Ec[t])
            xp.subtract(1, ec, out=ec)
            ec *= o

    def prepare_back(self, s):
        # dz_{i,f,g} = dc * E_{i,f,g}, dz_o = dh * E_o, dc += dh * Ec, dc_{t-1} = dc * Fm
        xp, Z, A = B.xp, s.Z, s.A
        T, G, N, U = Z.shape
        if s.E is None:  # not filled by a training forward
            E = s.E = s.empty("E", A.shape, A.dtype)
            for j, fn, other in (
                (0, self.rec, A[:, 2]),
                (1, self.rec, s.C[:-1]),
                (2, self.act, A[:, 0]),
                (3, self.rec, s.TC),
            ):
                fn.deriv(Z[:, j], A[:, j], out=E[:, j])
                E[:, j] *= other
            s.Ec = self.act.deriv(s.C[1:], s.TC, out=s.empty("Ec", s.TC.shape, A.dtype))
            s.Ec *= A[:, 3]
        s.Fm = A[:, 1]
        if s.M is not None:
            s.E *= s.M[:, None]
            s.Ec *= s.M
            s.Fm = xp.where(s.Mb, s.Fm, xp.ones((), dtype=A.dtype))
        s.dZ4 = s.dZ.reshape(T, N, G, U)
        s.gU = s.empty("gU", (N, U), A.dtype)

    def step_back(self, s, t, dh, dc, out):
        xp, e, dz = B.xp, s.E[t], s.dZ4[t]
        dc += xp.multiply(dh, s.Ec[t], out=s.gU)  # dc is the loop's own array (run_back)
        xp.multiply(dc[:, None, :], e[:3].transpose(1, 0, 2), out=dz[:, :3])
        xp.multiply(dh, e[3], out=dz[:, 3])
        dhp = rec_matmul(s.dZ[t], s.WrT, out, s.back_parts)
        if s.M is not None:
            dhp += dh * s.keep[t]
        dc *= s.Fm[t]
        return dhp, dc


class GRUCell(GatedCell):
    """GRU, Keras gate order z, r, h with reset_after: hh = act(x W_h + b_h + r (h R_h + b'_h)),
    h_t = z h_{t-1} + (1 - z) hh."""

    G = 3
    split_bias = True
    kind = "gru"

    def alloc(self, s, training=False):
        super().alloc(s, training)
        s.HR = s.empty("HR", s.Z.shape, s.Z.dtype)  # h_{t-1} Wr + brec (z, r blocks scaled when fused)
        s.cU = s.empty("cU", s.H.shape[1:], s.Z.dtype)

    def step(self, s, t):
        xp = B.xp
        z, a, rec = s.Z[t], s.A[t], s.HR[t]  # (3, N, U) each
        rec_matmul(s.H[t], s.Wr, rec, s.parts)
        if s.brec is not None:
            rec += s.brec
        zr = z[:2]
        zr += rec[:2]
        if self.fused:  # a is z
            xp.tanh(zr, out=zr)
            zr *= 0.5
            zr += 0.5
        else:
            self.rec(zr, out=a[:2])
        z[2] += xp.multiply(a[1], rec[2], out=s.cU)
        hh = self.act(z[2], out=a[2])
        h = xp.subtract(s.H[t], hh, out=s.H[t + 1])
        h *= a[0]
        h += hh

    def prepare_back(self, s):
        # dz_h = dh * Eh (into dZ), dz_z = dh * Ez, dz_r = dz_h * Er, d(rec_h) = dz_h * r (into dRec)
        xp, Z, A, dt = B.xp, s.Z, s.A, s.Z.dtype
        zg, r, hh = A[:, 0], A[:, 1], A[:, 2]
        shape = s.H[1:].shape
        s.Ez = self.rec.deriv(Z[:, 0], zg, out=s.empty("Ez", shape, dt))
        tmp = xp.subtract(s.H[:-1], hh, out=s.empty("tmp", shape, dt))
        s.Ez *= tmp
        s.Eh = self.act.deriv(Z[:, 2], hh, out=s.empty("Eh", shape, dt))
        s.Eh *= xp.subtract(1, zg, out=tmp)
        s.Er = self.rec.deriv(Z[:, 1], r, out=s.empty("Er", shape, dt))
        s.Er *= s.HR[:, 2]
        s.Zm = zg
        if s.M is not None:
            s.Ez *= s.M
            s.Eh *= s.M
            s.Zm = xp.where(s.Mb, zg, xp.ones((), dtype=dt))
        s.dRec = s.empty("dRec", s.dZ.shape, dt)
        s.gU = s.empty("gU", shape[1:], dt)

    def step_back(self, s, t, dh, dc, out):
        xp, U = B.xp, self.units
        drec = s.dRec[t]
        dxh = xp.multiply(dh, s.Eh[t], out=s.dZ[t, :, 2 * U :])
        xp.multiply(dh, s.Ez[t], out=drec[:, :U])
        xp.multiply(dxh, s.Er[t], out=drec[:, U : 2 * U])
        xp.multiply(dxh, s.A[t, 1], out=drec[:, 2 * U :])
        dhp = rec_matmul(drec, s.WrT, out, s.back_parts)
        dhp += xp.multiply(dh, s.Zm[t], out=s.gU)
        return dhp, None

    def finish_back(self, s):
        U = self.units
        s.dZ[..., : 2 * U] = s.dRec[..., : 2 * U]


_PART_MNK = 2**19  # rows x weights of one recurrent product piece (measured: benchmarks/README.md)
_MIN_PART_ROWS = 8


def row_parts(n: int, weights: int) -> list[slice] | None:
    """Row slices that split an (n, K) @ (K, M) recurrent product with K*M = ``weights`` into pieces of at
    most _PART_MNK multiply-adds, or None for one product.

    A step's product is small (64 x 64 @ 64 x 256 for LSTM(64) at batch 64) and OpenBLAS hands a
    product of that size to all its threads, which on a busy machine wait for each other at every
    step (0.8-3.9 ms against 0.09 ms on one thread, measured); pieces under its threading threshold run
    on the calling thread. Large layers, whose products gain from threads, stay whole.
    """
    rows = _PART_MNK // max(weights, 1)
    if rows >= n or rows < _MIN_PART_ROWS:
        return None
    return [slice(a, min(a + rows, n)) for a in range(0, n, rows)]


def rec_matmul(a, w, out, parts):
    """out = a @ w in row pieces ``parts`` (see row_parts; None: one product): the forward's a (N, U) @ Wr
    (G, U, U) -> (G, N, U), one product per gate block, or the backward's dz (N, G*U) @ R^T -> (N, U)."""
    xp = B.xp
    if parts is None:
        return xp.matmul(a, w, out=out)
    for p in parts:
        xp.matmul(a[p], w, out=out[..., p, :])
    return out


def run(cell: Cell, s, Wr, brec, h0, c0, Mb, training=False):
    """Forward loop over time on the tape ``s`` whose ``s.Z`` (T, G, N, U) holds x W + b (pre-scaled by
    ``s.scale`` when fused; overwritten with pre-activations/activations). Wr (G, U, U), brec (G, 1, U):
    the recurrent kernel's blocks and bias as used (scaled). ``training``: a backward follows (a cell may
    record its coefficients step by step)."""
    xp = B.xp
    T, G, N, U = s.Z.shape
    dt = s.Z.dtype
    s.Wr, s.brec, s.Mb = Wr, brec, Mb
    s.parts = row_parts(N, U * U)  # the products are per block (measured faster than one (N, U) @ (U, G*U))
    s.hWr = s.empty("hWr", (G, N, U), dt)
    s.H = s.empty("H", (T + 1, N, U), dt)
    s.H[0] = 0 if h0 is None else h0
    s.C = None
    if cell.n_states == 2:
        s.C = s.empty("C", (T + 1, N, U), dt)
        s.C[0] = 0 if c0 is None else c0
    if cell.kernel is not None and kernels.wanted("rnn", s.Z.size, training, COLD_INFERENCE_WORK):
        _run_kernel(cell, s, Wr, brec, Mb)
        return s
    cell.alloc(s, training)
    skip = None if Mb is None else ~Mb
    for t in range(T):
        cell.step(s, t)
        if skip is not None:  # masked steps carry the state through
            xp.copyto(s.H[t + 1], s.H[t], where=skip[t])
            if s.C is not None:
                xp.copyto(s.C[t + 1], s.C[t], where=skip[t])
    return s


def run_back(cell: Cell, s, Wr, dseq, dh, dc):
    """BPTT with the true (unscaled) recurrent kernel ``Wr`` (U, G*U): dseq (T, N, U) gradients of the
    per-step outputs (or None), dh/dc of the final state (arrays the loop may update in place). Fills s.dZ
    (T, N, G*U), the gradient of x W + b, and s.dRec (of h R + b_rec; the same array but for GRU); returns
    the gradients of the initial states (dh0, dc0)."""
    xp = B.xp
    T, G, N, U = s.Z.shape
    s.dZ = s.dRec = s.empty("dZ", (T, N, G * U), s.Z.dtype)
    s.dHp = s.empty("dHp", (2, N, U), s.Z.dtype)
    s.WrT = xp.ascontiguousarray(Wr.T)
    s.back_parts = row_parts(N, G * U * U)
    if cell.kernel is not None and kernels.active():
        return _run_back_kernel(cell, s, dseq, dh, dc)
    s.M = None if s.Mb is None else s.Mb.astype(s.Z.dtype)
    s.keep = None if s.M is None else 1 - s.M
    cell.prepare_back(s)
    for t in range(T - 1, -1, -1):  # dh starts as the caller's own array, then alternates between dHp[0], dHp[1]
        if dseq is not None:
            dh += dseq[t]
        dh, dc = cell.step_back(s, t, dh, dc, s.dHp[t % 2])
    cell.finish_back(s)
    return dh.copy() if T else dh, dc  # never a pool array


_NO_MASK = np.zeros((0, 0), dtype=bool)  # the kernels' "no mask" (a (T, N) mask otherwise)

# Gate elements (T*G*N*U summed over forwards) of inference a process runs on the xp path before it loads
# the compiled steps. Loading them costs about 0.6 s once (importing Numba, then its code generator at the
# first cached call); they save about 1.4 ms per 2^20 elements of LSTM(64) inference (0.76x at batch 256),
# so a short predict (one row, or a few thousand) never pays it back and keeps its start-up. Training
# (a backward follows) and a process that has Numba loaded always run them (kernels.wanted).
COLD_INFERENCE_WORK = 2**28


def _kernel_mask(Mb):
    return _NO_MASK if Mb is None else Mb.reshape(Mb.shape[:2])


def _run_kernel(cell: Cell, s, Wr, brec, Mb) -> None:
    """run()'s loop with compiled steps (nnctl/kernels/rnn.py): per step one product h_{t-1} Rk (N, G*U) and
    one kernel call for all the gate work, masks included. Fills what the xp backward reads too (A = Z, TC,
    HR), so either backward can follow either forward."""
    k = kernels.load("rnn")
    T, G, N, U = s.Z.shape
    dt = s.Z.dtype
    s.A = s.Z
    s.Rk = np.ascontiguousarray(Wr.transpose(1, 0, 2).reshape(U, G * U))
    Q = s.Q = s.empty("Q", (N, G * U), dt)
    parts = row_parts(N, G * U * U)
    M2, Z, H, Rk = _kernel_mask(Mb), s.Z, s.H, s.Rk
    if cell.kind == "lstm":
        C, TC = s.C, s.empty("TC", (T, N, U), dt)
        s.TC = TC
        for t in range(T):
            rec_matmul(H[t], Rk, Q, parts)
            k.lstm_step(t, Z, Q, H, C, TC, M2)
    elif cell.kind == "gru":
        HR = s.HR = s.empty("HR", Z.shape, dt)
        b = np.zeros((G, U), dtype=dt) if brec is None else np.ascontiguousarray(brec.reshape(G, U))
        for t in range(T):
            rec_matmul(H[t], Rk, Q, parts)
            k.gru_step(t, Z, Q, b, HR, H, M2)
    else:
        for t in range(T):
            rec_matmul(H[t], Rk, Q, parts)
            k.rnn_step(t, Z, Q, H, M2)


def _run_back_kernel(cell: Cell, s, dseq, dh, dc):
    """run_back()'s loop with compiled steps: per step one kernel call (dh_t from the last step's product,
    the gate gradients into dZ[t]/dRec[t]) and one product dRec[t] R^T; needs only what either forward
    recorded (A, H, C, TC, HR)."""
    k = kernels.load("rnn")
    T, G, N, U = s.Z.shape
    dt = s.Z.dtype
    if cell.kind == "gru":
        s.dRec = s.empty("dRec", s.dZ.shape, dt)
    P, K = s.P, s.K = s.empty("P", (N, U), dt), s.empty("K", (N, U), dt)
    seq = np.zeros((0, 0, 0), dtype=dt) if dseq is None else dseq
    M2, A, dZ, dRec, WrT, parts = _kernel_mask(s.Mb), s.A, s.dZ, s.dRec, s.WrT, s.back_parts
    for t in range(T - 1, -1, -1):
        first = t == T - 1
        if cell.kind == "lstm":
            k.lstm_back_step(t, first, dh, dc, P, K, seq, A, s.C, s.TC, M2, dZ)
        elif cell.kind == "gru":
            k.gru_back_step(t, first, dh, P, K, seq, A, s.HR, s.H, M2, dZ, dRec)
        else:
            k.rnn_back_step(t, first, dh, P, K, seq, s.H, M2, dZ)
        rec_matmul(dRec[t], WrT, P, parts)
    k.carry(dh, P, K)
    return dh, dc  # the caller's own arrays, never pool buffers
