"""A stand-in for CuPy on the CPU with CuPy's strictness, so nnctl's GPU code path runs where no GPU is.

Put its folder first on the path and ask for the GPU (``PYTHONPATH=tests/cupy_emulator NNCTL_DEVICE=gpu
pytest``), or install it for one test with ``emulator.install(monkeypatch)``. The arithmetic is NumPy's,
so a run on the emulated device must give bit-identical results to the CPU run; what it checks is that
the code keeps to the rules a real device imposes, which NumPy alone never enforces:

- A device array is not a NumPy array: ``np.asarray(a)``, h5py writes and every other implicit
  device-to-host conversion raise TypeError, as CuPy does; ``a.get()`` is the explicit way.
- A host NumPy array mixed into a device operation (an operand, an index, a value assigned into a device
  array) raises TypeError; only ``cupy.asarray``/``cupy.array`` move host data to the device. This is
  slightly stricter than CuPy where CuPy would copy silently, which is always a hidden transfer.
- Reductions and scalar indexing return 0-d device arrays, not Python numbers, as in CuPy.
- Every read of a value back to the host (``float(a)``, ``int``, ``bool``, ``.item()``, ``.get()``,
  ``.tolist()``, formatting) adds one to ``host_reads``: a training step should make none. Every copy
  of a host array to the device (``cupy.asarray`` of a NumPy array) adds one to ``host_copies``.
- NumPy functions called on device arrays dispatch here (``__array_function__``/``__array_ufunc__``).

Only what nnctl and its tests use is covered; an attribute CuPy lacks would be a bug the real CuPy finds.
"""

from __future__ import annotations

import operator

import numpy as _np
from numpy.lib.mixins import NDArrayOperatorsMixin as _Operators

__version__ = "emulated"
host_reads = 0  # device-to-host value reads since import (tests reset it)
host_copies = 0  # host-to-device array copies since import

_HOST_ENTRY = {"asarray", "array", "asanyarray"}  # the explicit host-to-device copies


def _count_read():
    global host_reads
    host_reads += 1


def _host_array_error(where: str) -> TypeError:
    return TypeError(f"Unsupported type <class 'numpy.ndarray'> in {where}: move host data with cupy.asarray")


class ndarray(_Operators):  # noqa: N801 - CuPy's name
    """A NumPy array standing for device memory: strict about host mixing, counts reads to the host."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a: _np.ndarray):
        self._a = a

    # -- the host boundary -------------------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
            "a NumPy array explicitly."
        )

    def get(self, stream=None, order="C", out=None):
        _count_read()
        return _np.array(self._a, order=order)

    def item(self, *args):
        _count_read()
        return self._a.item(*args)

    def tolist(self):
        _count_read()
        return self._a.tolist()

    def _scalar(self, kind):
        _count_read()
        return kind(self._a)

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __bool__(self):
        return self._scalar(bool)

    def __index__(self):
        return self._scalar(operator.index)

    def __format__(self, spec):
        return format(self.item() if self._a.ndim == 0 else self.get(), spec)

    def __repr__(self):
        return f"emulated device {self._a!r}"

    # -- NumPy protocols: every operation unwraps, checks and rewraps ------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _call(getattr(ufunc, method), f"numpy.{ufunc.__name__}", inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, f"numpy.{func.__name__}", args, kwargs)

    # -- the ndarray surface ---------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "an index")])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "an index")] = _unwrap(value, "an assigned value")

    def __getattr__(self, name):  # methods: a.sum(), a.reshape(), a.astype(), ...
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)
        return lambda *args, **kwargs: _call(attr, f"ndarray.{name}", args, kwargs)


def _unwrap(x, where: str, host_ok: bool = False):
    """Device arrays to their NumPy storage, recursively; host arrays refused unless ``host_ok``."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        if not host_ok:
            raise _host_array_error(where)
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where, host_ok) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, where, host_ok) for k, v in x.items()}
    return x


def _wrap(x):
    """NumPy results as device arrays (scalars become 0-d arrays, as CuPy returns them)."""
    if isinstance(x, _np.ndarray):
        return ndarray(x)
    if isinstance(x, _np.generic):
        return ndarray(_np.asarray(x))
    if isinstance(x, (list, tuple)):
        return type(x)(_wrap(v) for v in x)
    return x


def _call(fn, where, args, kwargs, host_ok=False):
    return _wrap(fn(*_unwrap(args, where, host_ok), **_unwrap(kwargs, where, host_ok)))


class _Ufunc:
    """A NumPy ufunc with device-only operands, and its methods (``at``, ``reduce``, ...)."""

    def __init__(self, uf):
        self._uf = uf

    def __call__(self, *args, **kwargs):
        return _call(self._uf, f"cupy.{self._uf.__name__}", args, kwargs)

    def __getattr__(self, name):
        method = getattr(self._uf, name)
        return lambda *args, **kwargs: _call(method, f"cupy.{self._uf.__name__}.{name}", args, kwargs)


def _function(name, fn):
    host_ok = name in _HOST_ENTRY

    def device_function(*args, **kwargs):
        global host_copies
        if host_ok and args and isinstance(args[0], _np.ndarray):
            host_copies += 1
            return ndarray(_np.array(args[0], *args[1:], **kwargs))  # a copy: device memory is its own
        return _call(fn, f"cupy.{name}", args, kwargs, host_ok)

    device_function.__name__ = name
    return device_function


def __getattr__(name):  # module attributes: cupy.zeros, cupy.float32, cupy.inf, ...
    attr = getattr(_np, name)
    if isinstance(attr, _np.ufunc):
        attr = _Ufunc(attr)
    elif callable(attr) and not isinstance(attr, type):  # functions; dtypes such as cupy.float32 stay NumPy's
        attr = _function(name, attr)
    globals()[name] = attr
    return attr


class _StrideTricks:
    as_strided = staticmethod(_function("as_strided", _np.lib.stride_tricks.as_strided))


class lib:  # noqa: N801 - cupy.lib.stride_tricks.as_strided
    stride_tricks = _StrideTricks


from cupy import cuda  # noqa: E402, F401 - cupy.cuda as in CuPy, after ndarray (which it does not need)
