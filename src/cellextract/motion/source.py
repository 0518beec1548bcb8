"""Random access to column bands of the raw frames (second pass of motion correction).

The pixel-major CaImAn memmap is written one band of image columns at a time (a band of
columns is a contiguous block of rows of the ``(H*W, T)`` file, pixels in Fortran order),
so the second pass reads, for every frame, only the columns of one band (plus a margin)
from the raw movie. :class:`RawSource` hands out the stored frames themselves as views
(:meth:`RawSource.frames`, the caller takes the columns it needs) when they are
uncompressed and back to back (isxd, contiguous TIFF, series of those): a short-lived
read-only map per block of frames, pages served from the page cache the first pass
filled, nothing kept mapped (so nothing accumulates in the RSS). Other inputs (AVI,
compressed TIFF) are first copied to a frame-major float32 scratch file by the first
pass, and read the same way; an in-memory movie is used as it is.
"""

from __future__ import annotations

import itertools
import mmap
import os
from dataclasses import dataclass

import numpy as np

FRAME_BLOCK_BYTES = 32 << 20  #: raw bytes mapped at once by :meth:`RawSource.frames` (counted in the RSS while mapped)


@dataclass(frozen=True)
class RawLayout:
    """Where each frame of a movie is stored.

    Attributes
    ----------
    files : tuple of (str, int, str)
        ``(path, byte offset of stored frame 0, dtype string)`` per stored file.
    dims : (int, int)
        ``(H, W)``.
    seg : np.ndarray
        ``(T,)`` index into ``files`` of each frame.
    idx : np.ndarray
        ``(T,)`` stored frame index inside its file; ``-1`` for frames read as NaN
        (dropped / invalid).
    """

    files: tuple
    dims: tuple
    seg: np.ndarray
    idx: np.ndarray

    @property
    def n_frames(self) -> int:
        """Number of frames ``T``."""
        return int(self.seg.size)


def _frame_file(reader):
    """The :class:`cellextract.io.base.FrameFile` behind a format reader, or None."""
    for attr in ("_mm", "_frames"):
        ff = getattr(reader, attr, None)
        if ff is not None and hasattr(ff, "frame_bytes") and hasattr(ff, "offset"):
            return ff
    return None


def raw_layout(reader) -> RawLayout | None:
    """Storage layout of ``reader``'s frames, or None if they cannot be read in place.

    Supports the isxd and TIFF readers when their frames are stored uncompressed and
    back to back, and series made only of such files.
    """
    H, W = (int(reader.dims[0]), int(reader.dims[1]))
    if hasattr(reader, "_order") and hasattr(reader, "_reader"):  # SeriesReader
        files, segs, idxs = [], [], []
        for i in reader._order:
            sub = raw_layout(reader._reader(i))
            if sub is None:
                return None
            segs.append(sub.seg + len(files))
            idxs.append(sub.idx)
            files.extend(sub.files)
        return RawLayout(tuple(files), (H, W), np.concatenate(segs), np.concatenate(idxs))
    ff = _frame_file(reader)
    if ff is None or tuple(ff.dims) != (H, W):
        return None
    T = int(reader.n_frames)
    idx = getattr(reader, "_file_index", None)
    idx = np.arange(T, dtype=np.int64) if idx is None else np.asarray(idx, np.int64).copy()
    if idx.size != T:
        return None
    invalid = getattr(reader, "invalid", None)
    if invalid is not None:
        idx[np.asarray(invalid, bool)] = -1
    path = os.fspath(getattr(reader, "path", None) or "")
    if not path or not os.path.isfile(path):
        return None
    return RawLayout(((path, int(ff.offset), ff.dtype.str),), (H, W), np.zeros(T, np.int32), idx)


def scratch_layout(path: str, dims, T: int) -> RawLayout:
    """Layout of a frame-major float32 scratch copy ``(T, H, W)`` written by the first pass."""
    return RawLayout(((os.fspath(path), 0, "<f4"),), (int(dims[0]), int(dims[1])),
                     np.zeros(T, np.int32), np.arange(T, dtype=np.int64))


def _runs(seg: np.ndarray, idx: np.ndarray) -> list[tuple[int, int]]:
    """Split frames into ``[a, b)`` runs stored back to back in one file (or all NaN)."""
    n = seg.size
    if n == 0:
        return []
    brk = (np.diff(seg) != 0) | (np.diff(idx) != 1) | (idx[1:] < 0) | (idx[:-1] < 0)
    edges = np.concatenate([[0], np.flatnonzero(brk) + 1, [n]])
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _map(fd: int, offset: int, length: int) -> tuple[mmap.mmap, int]:
    """Read-only map of ``length`` bytes at ``offset`` of ``fd``: ``(map, skip)``, the data
    at byte ``skip`` of the map."""
    start = offset // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
    m = mmap.mmap(fd, length + offset - start, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=start)
    return m, offset - start


def _close(m: mmap.mmap) -> None:
    """Unmap ``m`` now, or when the last array viewing it is gone."""
    try:
        m.close()
    except BufferError:
        pass


class RawSource:
    """Read ``(n, H, c1 - c0)`` float32 column bands of raw frames.

    Parameters
    ----------
    layout : RawLayout or np.ndarray
        Stored frames, or an in-memory ``(T, H, W)`` movie.
    """

    def __init__(self, layout):
        if isinstance(layout, np.ndarray):
            self.array, self.layout = layout, None
            self.n_frames, self.dims = int(layout.shape[0]), (int(layout.shape[1]), int(layout.shape[2]))
            self.dtype = np.dtype(np.float32)
        else:
            self.array, self.layout = None, layout
            self.n_frames, self.dims = layout.n_frames, tuple(layout.dims)
            kinds = {np.dtype(dt) for _, _, dt in layout.files}
            # one stored type: blocks are read in it (half the bytes of float32 for uint16)
            self.dtype = kinds.pop() if len(kinds) == 1 else np.dtype(np.float32)
            if self.dtype.kind not in "uif" or self.dtype.itemsize > 4:
                self.dtype = np.dtype(np.float32)

    def read_cols(self, t0: int, t1: int, c0: int, c1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``t0:t1``, columns ``c0:c1`` as float32 ``(n, H, c1 - c0)`` (NaN frames for
        frames not stored)."""
        H = self.dims[0]
        n = t1 - t0
        if out is None:
            out = np.empty((n, H, c1 - c0), np.float32)
        if self.array is not None:
            out[...] = self.array[t0:t1, :, c0:c1]
            return out
        missing = np.zeros(n, bool)
        self._read_runs(t0, t1, c0, c1, out, missing)
        out[missing] = np.nan
        return out

    def frames(self, t0: int, t1: int):
        """Iterate ``(i, frame)`` over frames ``t0:t1``: ``frame`` a read-only ``(H, W)``
        view of the stored frame (in its stored type, no copy: served by the page cache
        through a short-lived map), or None for a frame not stored (dropped / invalid).
        Use each frame before asking for the next one."""
        if self.array is not None:
            for i in range(t1 - t0):
                yield i, self.array[t0 + i]
            return
        H, W = self.dims
        lay = self.layout
        seg, idx = lay.seg[t0:t1], lay.idx[t0:t1]
        for a, b in _runs(seg, idx):
            k0 = int(idx[a])
            if k0 < 0:
                for i in range(a, b):
                    yield i, None
                continue
            path, off, dt = lay.files[int(seg[a])]
            dtype = np.dtype(dt)
            fb = H * W * dtype.itemsize
            step = max(1, FRAME_BLOCK_BYTES // fb)
            with open(path, "rb") as fh:
                for s in range(a, b, step):
                    e = min(b, s + step)
                    m, skip = _map(fh.fileno(), off + (k0 + s - a) * fb, (e - s) * fb)
                    blk = np.frombuffer(m, dtype, count=(e - s) * H * W, offset=skip).reshape(e - s, H, W)
                    for i in range(s, e):
                        yield i, blk[i - s]
                    del blk
                    _close(m)

    def _read_runs(self, t0: int, t1: int, c0: int, c1: int, out: np.ndarray, missing: np.ndarray) -> None:
        for i, f in self.frames(t0, t1):
            if f is None:
                missing[i] = True
            else:
                out[i] = f[:, c0:c1]
