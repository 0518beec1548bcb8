"""Inscopix ``.isxd`` movie reader (``isx`` package, frames memory-mapped) and header parsing.

An isxd file is the raw frame data followed by a JSON header and, in its last 8 bytes,
the header's length (little-endian uint64). The JSON is parsed here too so that
``extraProperties`` (and the spacing/timing blocks) reach :attr:`IsxdReader.metadata`
verbatim for later exports. Dropped and cropped frames are not stored in the file; the
reader flags them (and blank frames) in ``invalid`` and returns them as NaN frames.

Frames are read straight from the data block with ``pread`` (no per-frame
``isx.get_frame_data`` call, ~10x less CPU; no long-lived memory map, whose pages would
count in the reader's resident memory) when the layout is certain (see
:meth:`IsxdReader._direct_map`); otherwise through ``isx``.
"""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import numpy as np

from cellextract.errors import InputError
from cellextract.io.base import FrameFile, MovieReader, one_line

#: isxd header ``type`` codes seen in real files (0 = movie).
ISXD_TYPES = {0: "a movie", 1: "a cell set", 5: "an event set"}
_DATA_TYPES = {0: np.uint16, 1: np.float32, 2: np.uint8}

#: The ``isx`` library is not thread-safe: two threads opening movies at once crash the
#: process (SIGSEGV in ``get_acquisition_info``, seen with the motion-correction worker
#: threads). Every ``isx`` call made by the reader holds this lock; direct reads do not.
ISX_LOCK = threading.RLock()


def read_isxd_header(path) -> tuple[dict, int]:
    """Parse the JSON header of an isxd file.

    Returns
    -------
    header : dict
        The parsed JSON header.
    data_bytes : int
        Number of bytes in front of the header (the stored frame data).
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            if size < 8:
                raise ValueError("file shorter than 8 bytes")
            fh.seek(size - 8)
            (hlen,) = struct.unpack("<Q", fh.read(8))
            start = size - 9 - hlen  # header text is hlen + 1 bytes (with a trailing NUL)
            if hlen == 0 or start < 0:
                raise ValueError(f"header length {hlen} does not fit a {size}-byte file")
            fh.seek(start)
            text = fh.read(hlen + 1).rstrip(b"\x00").decode("utf-8")
        return json.loads(text), start
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable isxd file (bad JSON header: {one_line(exc)})") from exc


def _ratio(d) -> float | None:
    try:
        return float(d["num"]) / float(d["den"])
    except (KeyError, TypeError, ZeroDivisionError):
        return None


class IsxdReader(MovieReader):
    """Reader for Inscopix ``.isxd`` movies.

    ``fr = 1 / period``; ``start_time`` is the first frame's time stamp in seconds since
    the Unix epoch (as stored, without the UTC offset); ``invalid`` marks dropped,
    cropped and blank frames, which :meth:`read` returns as NaN frames.
    ``metadata`` holds ``extraProperties``, ``spacingInfo``, ``timingInfo``,
    ``producer`` and ``acquisitionInfo`` (from ``isx.Movie.get_acquisition_info``).
    """

    format = "isxd"

    def __init__(self, path):
        import isx

        self.path = Path(path)
        header, data_bytes = read_isxd_header(self.path)
        kind = header.get("type", 0)
        if kind != 0:
            what = ISXD_TYPES.get(kind, f"a data set of header type {kind}")
            raise InputError(f"{self.path}: isxd file is not a movie (it holds {what})")
        try:
            with ISX_LOCK:
                self._movie = isx.Movie.read(str(self.path))
                timing, spacing = self._movie.timing, self._movie.spacing
                self.dtype = np.dtype(self._movie.data_type)
                mask = np.asarray(timing.get_valid_samples_mask(), dtype=bool)
                acq = self._movie.get_acquisition_info()
                n_frames, dims = int(timing.num_samples), tuple(int(n) for n in spacing.num_pixels)
                period = timing.period.secs_float
                start_time = float(timing.start._to_secs_since_epoch().secs_float)
                dropped = [int(i) for i in timing.dropped]
                cropped = [[int(a), int(b)] for a, b in timing.cropped]
                blank = [int(i) for i in timing.blank]
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{self.path}: isx cannot open the movie: {one_line(exc)}") from exc
        self.n_frames, self.dims = n_frames, dims
        self.fr = 1.0 / period if period > 0 else None
        self.start_time = start_time
        self.invalid = ~mask if mask.size == self.n_frames else np.zeros(self.n_frames, bool)
        self.metadata = {
            "extraProperties": header.get("extraProperties"),
            "spacingInfo": header.get("spacingInfo"),
            "timingInfo": header.get("timingInfo"),
            "producer": header.get("producer"),
            "acquisitionInfo": acq,
            "period": period,
            "dropped": dropped,
            "cropped": cropped,
            "blank": blank,
        }
        self._check_size(header, data_bytes)
        self._mm = self._direct_map(header, data_bytes)
        self.direct_read = self._mm is not None

    def _direct_map(self, header: dict, data_bytes: int) -> np.ndarray | None:
        """Memory-map the stored frames when the layout is certain, else None (use isx).

        Frame data are ``(n_stored, H, W)`` in the header's ``dataType``, row-major, one
        frame after the other; dropped and cropped frames are not stored. The map is only
        used when the file has no per-frame header/footer, the data size is exactly that
        of the stored frames, and the first, middle and last stored frames equal what
        ``isx`` returns for them.
        """
        if header.get("hasFrameHeaderFooter") or self._movie is None:
            return None
        dt = _DATA_TYPES.get(header.get("dataType"))
        if dt is None or np.dtype(dt) != self.dtype:
            return None
        H, W = self.dims
        gone = np.zeros(self.n_frames, bool)
        for i in self.metadata["dropped"]:
            if 0 <= i < self.n_frames:
                gone[i] = True
        for a, b in self.metadata["cropped"]:
            gone[max(0, a):min(self.n_frames, b + 1)] = True
        stored = np.flatnonzero(~gone)
        if stored.size == 0 or data_bytes != stored.size * H * W * self.dtype.itemsize:
            return None
        try:
            mm = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(stored.size, H, W))
            for k in {0, stored.size // 2, stored.size - 1}:
                i = int(stored[k])
                if self.invalid[i]:
                    continue
                with ISX_LOCK:
                    ref = np.asarray(self._movie.get_frame_data(i))
                if ref.shape != (H, W) or not np.array_equal(ref, mm[k], equal_nan=True):
                    return None
        except Exception:
            return None
        # file index of each frame (-1: not stored)
        self._file_index = np.full(self.n_frames, -1, np.int64)
        self._file_index[stored] = np.arange(stored.size)
        del mm  # frames are read with pread: a long-lived map would keep every page read resident
        return FrameFile(self.path, 0, stored.size, (H, W), self.dtype)

    def _check_size(self, header: dict, data_bytes: int) -> None:
        """Reject files whose frame data are shorter than the header promises."""
        if self.n_frames == 0:
            raise InputError(f"{self.path}: isxd movie has no frames")
        if header.get("hasFrameHeaderFooter"):
            return
        stored = int((~self.invalid).sum())
        need = stored * self.dims[0] * self.dims[1] * self.dtype.itemsize
        if data_bytes < need:
            raise InputError(f"{self.path}: truncated isxd: {data_bytes} bytes of frame data, "
                             f"header promises {stored} frames of {self.dims[0]}x{self.dims[1]} "
                             f"{self.dtype.name} ({need} bytes)")

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._mm is not None:
            return self._read_direct(start, stop)
        out = np.empty((stop - start, *self.dims), dtype=np.float32)
        with ISX_LOCK:
            for i in range(start, stop):
                if self.invalid[i]:
                    out[i - start] = np.nan
                else:
                    out[i - start] = self._movie.get_frame_data(i)
        return out

    def _read_direct(self, start: int, stop: int) -> np.ndarray:
        """Frames read from the file (one ``pread`` per contiguous run, one conversion)."""
        idx = self._file_index[start:stop]
        out = np.empty((stop - start, *self.dims), dtype=np.float32)
        k0, k1 = int(idx[0]), int(idx[-1])
        if k0 >= 0 and k1 - k0 == stop - start - 1 and not self.invalid[start:stop].any():
            return self._mm.read(k0, k1 + 1, out)  # contiguous run
        for j, k in enumerate(idx):
            if k < 0 or self.invalid[start + j]:
                out[j] = np.nan
            else:
                self._mm.read(int(k), int(k) + 1, out[j:j + 1])
        return out

    def close(self) -> None:
        if getattr(self, "_mm", None) is not None:
            self._mm.close()
        self._mm = None
        with ISX_LOCK:  # dropping the last reference closes the file in isx
            self._movie = None
