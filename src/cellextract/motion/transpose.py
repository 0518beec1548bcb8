"""Frame-major scratch file -> CaImAn pixel-major memmap, in tiles of bounded memory.

Registration produces frames one after the other, but the CaImAn memmap stores each
pixel's time series contiguously (``(H*W, T)``, C order). Writing frame columns straight
into it touches every page of the file for every chunk of frames (a page holds 1024
frames of one pixel), which costs ~10x more page operations than the data. Instead:

1. workers append corrected frames, each already in Fortran pixel order, to a frame-major
   scratch file ``(T, H*W)`` with large sequential ``pwrite`` calls;
2. :func:`transpose_to_memmap` reads bands of ``B`` pixels over all frames (``pread`` of
   ``B`` contiguous pixels per frame), transposes them in memory, adds the
   non-negativity offset and writes the band's rows with one sequential ``pwrite``; every
   byte of the output is written once, with ~``TILE_BYTES`` x 2 of memory whatever ``T``
   is (``B`` shrinks as ``T`` grows, down to 1024 pixels = 4 KiB reads).
"""

from __future__ import annotations

import os

import numpy as np

TILE_BYTES = 96 << 20
SUB_ROWS = 256


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

    Bands of ``B`` pixels over all ``T`` frames (``B * T`` floats ~ ``TILE_BYTES``): one
    ``pread`` of ``B`` contiguous pixels per frame, an in-memory transpose
    (``cv2.transpose``), and one contiguous ``pwrite`` of the band's ``B`` rows.

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
    import cv2

    p_lo, p_hi = p_range if p_range is not None else (0, P)
    B = int(max(1024, TILE_BYTES // (4 * T)))
    B = max(1, min(B, p_hi - p_lo))
    rows = np.empty((T, B), np.float32)
    fin = os.open(scratch, os.O_RDONLY)
    fout = os.open(out_path, os.O_WRONLY)
    try:
        for p0 in range(p_lo, p_hi, B):
            p1 = min(p_hi, p0 + B)
            b = p1 - p0
            r = rows if b == B else np.empty((T, b), np.float32)
            for t in range(T):
                _pread_into(fin, r[t], (t * P + p0) * 4)
            if offset:
                r += np.float32(offset)
            # transpose and write in sub-bands of SUB_ROWS rows (small second buffer)
            for j0 in range(0, b, SUB_ROWS):
                j1 = min(b, j0 + SUB_ROWS)
                sub = cv2.transpose(r[:, j0:j1])
                _pwrite_all(fout, sub, (p0 + j0) * T * 4)
    finally:
        os.close(fin)
        os.close(fout)


def _pwrite_all(fd: int, arr: np.ndarray, offset: int) -> None:
    buf = memoryview(np.ascontiguousarray(arr)).cast("B")
    done = 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], offset + done)
