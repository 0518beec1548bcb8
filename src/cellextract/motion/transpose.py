"""Frame-major scratch file -> CaImAn pixel-major memmap, in tiles of bounded memory.

Registration produces frames one after the other, but the CaImAn memmap stores each
pixel's time series contiguously (``(H*W, T)``, C order). Writing frame columns straight
into it touches every page of the file for every chunk of frames (a page holds 1024
frames of one pixel), which costs ~10x more page operations than the data. Instead:

1. workers append corrected frames, each already in Fortran pixel order, to a frame-major
   scratch file ``(T, H*W)`` with large sequential ``pwrite`` calls;
2. :func:`transpose_to_memmap` reads tiles of ``Tb`` frames x ``B`` pixels (``pread`` of
   ``B`` contiguous pixels per frame), transposes them in memory, adds the non-negativity
   offset and writes them into the memmap through a short-lived mapping of those ``B``
   rows. With ``Tb`` = 1024 frames each row segment is one 4 KiB page, so every page of
   the output is written about once; memory is one tile (~64 MiB) whatever ``T`` is.
"""

from __future__ import annotations

import os

import numpy as np

TILE_BYTES = 64 << 20
TILE_FRAMES = 1024


def write_frames(fd: int, frames_f: np.ndarray, start: int) -> None:
    """Write frames ``(n, P)`` (Fortran pixel order) at frame ``start`` of the scratch file."""
    P = frames_f.shape[1]
    buf = memoryview(np.ascontiguousarray(frames_f, dtype=np.float32)).cast("B")
    off = int(start) * P * 4
    done = 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], off + done)


def _pread_into(fd: int, out: np.ndarray, offset: int) -> None:
    buf = memoryview(out).cast("B")
    done = 0
    while done < len(buf):
        n = os.preadv(fd, [buf[done:]], offset + done)
        if n <= 0:
            raise OSError(f"short read from scratch file at byte {offset + done}")
        done += n


def transpose_to_memmap(scratch: str, out_path: str, P: int, T: int, *, offset: float = 0.0,
                        p_range: tuple[int, int] | None = None) -> None:
    """Fill rows ``p_range`` of the ``(P, T)`` memmap at ``out_path`` from the ``(T, P)`` scratch.

    Parameters
    ----------
    scratch : str
        Frame-major float32 file ``(T, P)``.
    out_path : str
        Existing float32 file of ``P * T`` values (``(P, T)`` C order).
    P, T : int
        Pixels per frame and frames.
    offset : float
        Added to every value (non-negativity offset).
    p_range : (int, int), optional
        Pixel rows to do (default all); lets several processes share the work.
    """
    p_lo, p_hi = p_range if p_range is not None else (0, P)
    tb = min(T, TILE_FRAMES)
    B = int(max(256, min(p_hi - p_lo, TILE_BYTES // (4 * tb))))
    tile = np.empty((tb, B), np.float32)
    fd = os.open(scratch, os.O_RDONLY)
    try:
        for p0 in range(p_lo, p_hi, B):
            p1 = min(p_hi, p0 + B)
            b = p1 - p0
            for t0 in range(0, T, tb):
                t1 = min(T, t0 + tb)
                view = tile[:t1 - t0, :b]
                rows = np.empty((t1 - t0, b), np.float32) if b != B else view
                for k, t in enumerate(range(t0, t1)):
                    _pread_into(fd, rows[k], (t * P + p0) * 4)
                if offset:
                    rows += np.float32(offset)
                # map the b rows only while writing this tile: resident pages stay ~ b pages
                mm = np.memmap(out_path, dtype=np.float32, mode="r+", offset=p0 * T * 4, shape=(b, T))
                mm[:, t0:t1] = rows.T
                del mm
    finally:
        os.close(fd)
