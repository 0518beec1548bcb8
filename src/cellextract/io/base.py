"""Common movie-reader interface shared by the format readers.

A reader exposes ``path, n_frames, dims (H, W), dtype, fr, start_time, invalid,
metadata`` and streams frames with :meth:`MovieReader.read` and
:meth:`MovieReader.iter_chunks`. Frames are always returned as float32 ``(n, H, W)``;
frames flagged in ``invalid`` (dropped/cropped/blank isxd frames) are returned as NaN,
never as silent zeros.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from cellextract.errors import InputError

#: Default number of frames per chunk when streaming.
DEFAULT_CHUNK = 200


def one_line(exc: BaseException) -> str:
    """Return ``exc``'s message squeezed onto one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def dtype_class(dtype: np.dtype | str) -> str:
    """Return the dtype class used for series validation: 'integer', 'float' or 'bool'."""
    kind = np.dtype(dtype).kind
    if kind in "ui":
        return "integer"
    if kind == "f":
        return "float"
    if kind == "b":
        return "bool"
    return np.dtype(dtype).name


class MovieReader:
    """Base class of the format readers (use :func:`cellextract.io.open_movie`).

    Attributes
    ----------
    path : pathlib.Path
        The movie file.
    n_frames : int
        Number of frames ``T`` (including invalid ones).
    dims : (int, int)
        Frame size ``(H, W)`` = (rows, cols).
    dtype : np.dtype
        Pixel type stored in the file (frames are returned as float32 regardless).
    fr : float or None
        Frame rate in Hz from the file's metadata, None when the file has none.
    start_time : float or None
        Start of the first frame in seconds (isxd: seconds since the Unix epoch), else None.
    invalid : np.ndarray of bool, shape (n_frames,)
        True for dropped/cropped/blank frames; :meth:`read` returns them as NaN.
    metadata : dict
        Format-specific metadata (JSON-serialisable), e.g. isxd ``extraProperties``.
    """

    path: Path
    n_frames: int
    dims: tuple[int, int]
    dtype: np.dtype
    fr: float | None = None
    start_time: float | None = None
    invalid: np.ndarray
    metadata: dict
    format: str = ""

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Return frames ``start:stop`` (0 <= start < stop <= n_frames) as ``(n, H, W)``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file handle."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)``."""
        return (self.n_frames, *self.dims)

    def __len__(self) -> int:
        return self.n_frames

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, n_frames={self.n_frames}, "
                f"dims={self.dims}, dtype={np.dtype(self.dtype).name}, fr={self.fr})")

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Read frames ``start:stop``.

        Parameters
        ----------
        start, stop : int
            Frame range, ``0 <= start <= stop <= n_frames`` (``stop=None``: to the end).

        Returns
        -------
        np.ndarray
            ``(stop - start, H, W)`` float32; invalid (dropped/cropped) frames are NaN.
        """
        start, stop = check_range(start, stop, self.n_frames, self.path)
        if stop == start:
            return np.empty((0, *self.dims), dtype=np.float32)
        try:
            frames = self._read(start, stop)
        except InputError:
            raise
        except Exception as exc:  # backend failure on a damaged file
            raise InputError(f"{self.path}: cannot read frames {start}..{stop - 1} "
                             f"(corrupt or truncated file?): {one_line(exc)}") from exc
        frames = np.asarray(frames, dtype=np.float32)
        if frames.shape != (stop - start, *self.dims):
            raise InputError(f"{self.path}: read {frames.shape} for frames {start}..{stop - 1}, "
                             f"expected {(stop - start, *self.dims)} (corrupt file?)")
        bad = self.invalid[start:stop]
        if bad.any():
            if not frames.flags.writeable:
                frames = frames.copy()
            frames[bad] = np.nan
        return frames

    def iter_chunks(self, chunk: int = DEFAULT_CHUNK, *, start: int = 0,
                    stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_frame_index, frames (n, H, W) float32)`` over ``start:stop``."""
        yield from iter_chunks(self, chunk, start=start, stop=stop)


def check_range(start: int, stop: int | None, n_frames: int, path) -> tuple[int, int]:
    """Validate a frame range and return it as ints (``stop=None`` -> ``n_frames``)."""
    start = int(start)
    stop = n_frames if stop is None else int(stop)
    if not 0 <= start <= stop <= n_frames:
        raise IndexError(f"{path}: frame range {start}:{stop} outside 0:{n_frames}")
    return start, stop


def iter_chunks(reader, chunk: int, *, start: int = 0,
                stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``reader.read`` in chunks of at most ``chunk`` frames."""
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    start, stop = check_range(start, stop, reader.n_frames, reader.path)
    for s in range(start, stop, chunk):
        e = min(s + chunk, stop)
        yield s, reader.read(s, e)


class FrameFile:
    """Raw frames stored back to back in a file, read with ``pread`` (no memory map).

    Used for uncompressed contiguous movie data (isxd data block, contiguous TIFF): a read
    is one ``preadv`` into a reused buffer of the stored dtype and one conversion into the
    float32 output, so resident memory is bounded by the chunk whatever the movie length
    (a memory map would keep every page read mapped, and counted in the RSS, until closed).

    Parameters
    ----------
    path : path
        The file.
    offset : int
        Byte offset of frame 0.
    n_frames : int
        Frames stored.
    dims : (int, int)
        ``(H, W)``.
    dtype : np.dtype
        Stored pixel type (byte order included).
    """

    def __init__(self, path, offset: int, n_frames: int, dims: tuple[int, int], dtype):
        self.offset = int(offset)
        self.n_frames = int(n_frames)
        self.dims = (int(dims[0]), int(dims[1]))
        self.dtype = np.dtype(dtype)
        self.frame_bytes = self.dims[0] * self.dims[1] * self.dtype.itemsize
        self._fd = os.open(os.fspath(path), os.O_RDONLY)
        self._buf = np.empty(0, np.uint8)

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``start:stop`` as float32 ``(n, H, W)`` (into ``out`` when given)."""
        n = stop - start
        if out is None:
            out = np.empty((n, *self.dims), np.float32)
        nbytes = n * self.frame_bytes
        if self._buf.size < nbytes:
            self._buf = np.empty(nbytes, np.uint8)
        buf = self._buf[:nbytes]
        mv = memoryview(buf)
        pos = self.offset + start * self.frame_bytes
        done = 0
        while done < nbytes:
            k = os.preadv(self._fd, [mv[done:]], pos + done)
            if k <= 0:
                raise InputError(f"short read: frames {start}..{stop - 1} end beyond the end of the file")
            done += k
        out[...] = buf.view(self.dtype).reshape(n, *self.dims)
        return out

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
