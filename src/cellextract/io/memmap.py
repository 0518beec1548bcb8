"""CaImAn-layout memory-mapped movies (``.mmap``).

Layout (CaImAn's C-order memmap): a raw float32 file holding ``Yr`` of shape
``(P, T)`` with ``P = H * W``, C order, where pixel index ``i = row + col * H``
(Fortran order of the ``(H, W)`` image), i.e. ``Yr[:, t] == frame_t.ravel(order="F")``.
The file name carries the shape::

    {base}_d1_{H}_d2_{W}_d3_1_order_C_frames_{T}.mmap

:class:`MemmapWriter` fills such a file chunk by chunk under a temporary name and only
renames it to its final name in :meth:`MemmapWriter.finalize`, so an interrupted run
never leaves a half-written ``.mmap`` behind.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from cellextract.errors import InputError

_NAME_RE = re.compile(
    r"_d1_(?P<d1>\d+)_d2_(?P<d2>\d+)_d3_(?P<d3>\d+)_order_(?P<order>[CF])"
    r"_frames_(?P<T>\d+)_?\.mmap$"
)
_DTYPE = np.dtype(np.float32)


def memmap_name(base: str | os.PathLike, dims: tuple[int, int], T: int) -> str:
    """Return the CaImAn memmap file name for a movie.

    Parameters
    ----------
    base : str or path
        Prefix (may include directories), e.g. ``"results/s1/motion/s1"``.
    dims : (int, int)
        Frame size ``(H, W)``.
    T : int
        Number of frames.

    Returns
    -------
    str
        ``f"{base}_d1_{H}_d2_{W}_d3_1_order_C_frames_{T}.mmap"``.
    """
    H, W = (int(d) for d in dims)
    return f"{os.fspath(base)}_d1_{H}_d2_{W}_d3_1_order_C_frames_{int(T)}.mmap"


def _parse(path: str | os.PathLike) -> tuple[tuple[int, int], int, str]:
    name = Path(path).name
    m = _NAME_RE.search(name)
    if m is None:
        raise InputError(f"{path}: not a CaImAn memmap name "
                         "(expected '..._d1_H_d2_W_d3_1_order_C_frames_T.mmap')")
    if int(m["d3"]) != 1:
        raise InputError(f"{path}: 3-D memmaps (d3={m['d3']}) are not supported")
    dims = (int(m["d1"]), int(m["d2"]))
    return dims, int(m["T"]), m["order"]


def parse_memmap_name(path: str | os.PathLike) -> tuple[tuple[int, int], int]:
    """Read ``(dims, T)`` from a CaImAn memmap file name.

    Parameters
    ----------
    path : str or path
        File name such as ``"x_d1_60_d2_80_d3_1_order_C_frames_500.mmap"`` (CaImAn's
        trailing ``_`` before ``.mmap`` is accepted too).

    Returns
    -------
    dims : (int, int)
        ``(H, W)``.
    T : int
        Number of frames.
    """
    dims, T, _ = _parse(path)
    return dims, T


def create_memmap(path: str | os.PathLike, dims: tuple[int, int], T: int) -> np.memmap:
    """Create (or overwrite) a writable float32 ``(H*W, T)`` C-order memmap at ``path``.

    Prefer :class:`MemmapWriter` for outputs (atomic rename on completion); this is for
    scratch files.

    Returns
    -------
    np.memmap
        Shape ``(H*W, T)``, float32, mode ``"w+"`` (zero-filled).
    """
    P = int(dims[0]) * int(dims[1])
    if P <= 0 or int(T) <= 0:
        raise ValueError(f"cannot create an empty memmap (dims={dims}, T={T})")
    return np.memmap(os.fspath(path), dtype=_DTYPE, mode="w+", shape=(P, int(T)), order="C")


def open_memmap(path: str | os.PathLike, *, mode: str = "r") -> tuple[np.memmap, tuple[int, int], int]:
    """Open a CaImAn memmap read-only.

    Parameters
    ----------
    path : str or path
        A file named by :func:`memmap_name` (order C or F).
    mode : {"r", "r+", "c"}
        numpy memmap mode; default read-only.

    Returns
    -------
    Yr : np.memmap
        Shape ``(H*W, T)``, float32, Fortran pixel order.
    dims : (int, int)
        ``(H, W)``.
    T : int
        Number of frames.
    """
    dims, T, order = _parse(path)
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: memmap file not found")
    P = dims[0] * dims[1]
    expected = P * T * _DTYPE.itemsize
    size = p.stat().st_size
    if size != expected:
        raise InputError(f"{path}: memmap has {size} bytes, expected {expected} for "
                         f"{dims[0]}x{dims[1]} pixels x {T} frames float32 (truncated or wrong name)")
    Yr = np.memmap(os.fspath(p), dtype=_DTYPE, mode=mode, shape=(P, T), order=order)
    return Yr, dims, T


def frames_to_columns(frames: np.ndarray) -> np.ndarray:
    """Convert frames ``(n, H, W)`` to Fortran-pixel-order columns ``(H*W, n)`` float32."""
    frames = np.asarray(frames)
    n, H, W = frames.shape
    return np.ascontiguousarray(frames.transpose(2, 1, 0), dtype=_DTYPE).reshape(H * W, n)


def frames_from_memmap(Yr: np.ndarray, dims: tuple[int, int], start: int = 0,
                       stop: int | None = None) -> np.ndarray:
    """Return frames ``start:stop`` of a ``(H*W, T)`` memmap as ``(n, H, W)`` float32.

    Parameters
    ----------
    Yr : array ``(H*W, T)``
        Fortran pixel order (``Yr[:, t] == frame_t.ravel(order="F")``).
    dims : (int, int)
        ``(H, W)``.
    start, stop : int
        Frame range (Python slice semantics, ``stop=None`` means ``T``).

    Returns
    -------
    np.ndarray
        ``(n, H, W)`` float32, C-contiguous, a copy.
    """
    H, W = (int(d) for d in dims)
    if Yr.shape[0] != H * W:
        raise ValueError(f"Yr has {Yr.shape[0]} pixels, dims {dims} give {H * W}")
    block = np.asarray(Yr[:, start:stop])
    n = block.shape[1]
    return np.ascontiguousarray(block.reshape(W, H, n).transpose(2, 1, 0), dtype=_DTYPE)


class MemmapWriter:
    """Write a CaImAn memmap chunk by chunk; the final name appears only when complete.

    Parameters
    ----------
    path : str or path
        Final file name (normally made by :func:`memmap_name`).
    dims : (int, int)
        ``(H, W)``.
    T : int
        Total number of frames.

    Notes
    -----
    Data go to ``{path}.partial``; :meth:`finalize` flushes, checks that every frame was
    written and renames to ``path``. Used as a context manager, a clean exit finalizes and
    an exception deletes the partial file.
    """

    def __init__(self, path: str | os.PathLike, dims: tuple[int, int], T: int):
        self.path = Path(path)
        self.dims = (int(dims[0]), int(dims[1]))
        self.T = int(T)
        self.tmp_path = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._Yr = create_memmap(self.tmp_path, self.dims, self.T)
        self._written = np.zeros(self.T, dtype=bool)
        self._done = False

    @property
    def Yr(self) -> np.memmap:
        """The writable ``(H*W, T)`` array (before :meth:`finalize`)."""
        return self._Yr

    def write(self, start_frame: int, frames: np.ndarray) -> None:
        """Write frames ``(n, H, W)`` at frames ``start_frame .. start_frame + n - 1``."""
        if self._done:
            raise RuntimeError(f"{self.path}: writer already finalized")
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        n = frames.shape[0]
        if frames.shape[1:] != self.dims:
            raise ValueError(f"{self.path}: frames of shape {frames.shape[1:]}, expected {self.dims}")
        s = int(start_frame)
        if s < 0 or s + n > self.T:
            raise ValueError(f"{self.path}: frames {s}..{s + n} outside 0..{self.T}")
        self._Yr[:, s:s + n] = frames_to_columns(frames)
        self._written[s:s + n] = True

    def finalize(self) -> Path:
        """Flush, verify all frames were written, and rename to the final path."""
        if self._done:
            return self.path
        if not self._written.all():
            missing = int((~self._written).sum())
            raise RuntimeError(f"{self.path}: {missing} of {self.T} frames were never written")
        self._Yr.flush()
        del self._Yr
        os.replace(self.tmp_path, self.path)
        self._done = True
        return self.path

    def abort(self) -> None:
        """Discard the partial file."""
        if self._done:
            return
        self._done = True
        if hasattr(self, "_Yr"):
            del self._Yr
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "MemmapWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.finalize()
        except BaseException:
            self.abort()
            raise
