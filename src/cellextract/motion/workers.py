"""Worker threads of motion correction, each with its own movie reader.

The heavy steps (``preadv``, the FFTs of :mod:`scipy.fft`, OpenCV filters and warps,
large NumPy copies, ``pwrite``) release the GIL, so threads run them in parallel while
sharing one address space: no worker start-up, no copies of the template or of an
in-memory movie per worker, and the memory of the shared libraries is counted once.
(Measured on the 2-core benchmark machine: registration 1.8x, band writing 1.6x faster
with 2 threads than with 1.)

Readers keep state (file offsets, reused buffers), so every thread opens its own
reader from a picklable *spec* (:func:`source_spec`); the calling thread keeps the
reader it was given.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cellextract.errors import InputError


class ArrayReader:
    """Reader over an in-memory movie ``(T, H, W)`` (tests, small data)."""

    def __init__(self, movie: np.ndarray):
        self.movie = np.asarray(movie)
        self.n_frames = int(self.movie.shape[0])
        self.dims = (int(self.movie.shape[1]), int(self.movie.shape[2]))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` as float32."""
        return np.asarray(self.movie[start:stop], dtype=np.float32)


def source_spec(src):
    """``(spec, reader)``: a recipe to open ``src`` again in another thread (``spec[0]``
    is ``'array'``, ``'path'``, ``'series'`` or ``'object'`` for a reader that cannot
    be reopened), and a reader for the calling thread."""
    if isinstance(src, np.ndarray):
        return ("array", src), ArrayReader(src)
    if isinstance(src, (str, os.PathLike)):
        from cellextract.io import open_movie
        return ("path", os.fspath(src)), open_movie(src)
    if hasattr(src, "files") and hasattr(src, "to_json"):  # SeriesInfo
        from cellextract.io import open_series
        return ("series", src), open_series(src)
    if not (hasattr(src, "read") and hasattr(src, "n_frames") and hasattr(src, "dims")):
        raise InputError(f"motion_correct: cannot read frames from {type(src).__name__}")
    if hasattr(src, "info") and hasattr(src.info, "to_json"):  # SeriesReader
        return ("series", src.info), src
    if isinstance(src, ArrayReader):
        return ("array", src.movie), src
    if hasattr(src, "path") and hasattr(src, "metadata"):  # MovieReader
        return ("path", os.fspath(src.path)), src
    return ("object", src), src


def open_spec(spec):
    """A new reader from a :func:`source_spec` recipe."""
    kind, obj = spec
    if kind == "array":
        return ArrayReader(obj)
    if kind == "path":
        from cellextract.io import open_movie
        return open_movie(obj)
    if kind == "series":
        from cellextract.io import open_series
        return open_series(obj)
    return obj


class Workers:
    """``n`` worker threads (none for ``n == 1``: work runs in the calling thread).

    Parameters
    ----------
    n : int
        Number of threads.
    spec : tuple
        :func:`source_spec` recipe of the movie.
    reader : reader
        The calling thread's reader (used as is, never closed here).
    """

    def __init__(self, n: int, spec, reader):
        self.n = max(1, int(n))
        self._spec = spec
        self._main = threading.get_ident()
        self._main_reader = reader
        self._local = threading.local()
        self._opened: list = []
        self._lock = threading.Lock()
        self._ex = ThreadPoolExecutor(self.n, thread_name_prefix="motion") if self.n > 1 else None

    def reader(self):
        """This thread's reader."""
        if threading.get_ident() == self._main or self._spec[0] in ("array", "object"):
            return self._main_reader
        rd = getattr(self._local, "reader", None)
        if rd is None:
            rd = self._local.reader = open_spec(self._spec)
            with self._lock:
                self._opened.append(rd)
        return rd

    def map(self, fn, items):
        """``fn`` over ``items`` in parallel; results in the order of ``items``."""
        if self._ex is None:
            return map(fn, items)
        return self._ex.map(fn, items)

    def close(self) -> None:
        """Stop the threads and close the readers they opened."""
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)
            self._ex = None
        for rd in self._opened:
            if hasattr(rd, "close"):
                rd.close()
        self._opened.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
