"""Work buffers of the second pass: pre-faulted, reused, aligned for direct I/O.

A first touch of fresh memory is a page fault per 4 kB page; on the benchmark VM that is
~5 us a page (0.4-0.8 s for a 352 MB band buffer), while ``MAP_POPULATE`` maps the same
pages in one call (~0.1 s). Buffers are kept per thread and reused from band to band.
"""

from __future__ import annotations

import mmap
import threading

import numpy as np

PAGE = 4096  #: page size and direct-I/O alignment (bytes)
POPULATE_BYTES = 4 << 20  #: larger buffers are allocated pre-faulted

_LOCAL = threading.local()


def populated(n: int, dtype, *, populate: bool = True) -> np.ndarray:
    """``(n,)`` uninitialised array in page-aligned anonymous memory (plain ``np.empty``
    for small sizes).

    ``populate`` maps all its pages now (``MAP_POPULATE``: one call instead of a fault per
    page, for buffers about to be used by one thread); otherwise the pages are faulted in
    by whoever first writes them (several threads filling a large buffer in parallel) and
    transparent huge pages are requested (a fault per 2 MB instead of per 4 kB where the
    system allows it).
    """
    dtype = np.dtype(dtype)
    nbytes = int(n) * dtype.itemsize
    flags = getattr(mmap, "MAP_POPULATE", 0) if populate else 0
    if nbytes < POPULATE_BYTES or (populate and not flags):
        return np.empty(int(n), dtype)
    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flags)
    if not populate and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            m.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    return np.frombuffer(m, dtype, count=int(n))  # the array keeps the mapping alive


def scratch(key: str, shape: tuple, dtype) -> np.ndarray:
    """A work array of ``shape`` reused by this thread (grown when too small)."""
    store = _LOCAL.__dict__.setdefault("arrays", {})
    n = int(np.prod(shape))
    dtype = np.dtype(dtype)
    a = store.get(key)
    if a is None or a.dtype != dtype or a.size < n:
        store.pop(key, None)
        a = store[key] = populated(n, dtype)
    return a[:n].reshape(shape)


def release_scratch() -> None:
    """Free this thread's work arrays."""
    _LOCAL.__dict__.pop("arrays", None)


def aligned_view(store: np.ndarray, shape: tuple, offset: int) -> np.ndarray:
    """A float32 array of ``shape`` inside the byte buffer ``store`` whose address is
    congruent to the file ``offset`` modulo :data:`PAGE` (so its aligned middle can be
    written with direct I/O). ``store`` needs ``4 * prod(shape) + PAGE`` bytes."""
    nbytes = 4 * int(np.prod(shape))
    shift = (offset - store.ctypes.data) % PAGE
    if shift + nbytes > store.nbytes:
        raise ValueError(f"store of {store.nbytes} bytes too small for {nbytes} + alignment")
    return store[shift:shift + nbytes].view(np.float32).reshape(shape)
