"""Movie series: validation, time ordering and a reader over the concatenated movie.

A series is one or more movie files recorded with the same frame size, pixel type class
and frame rate. The concatenated movie is in TIME order: ``.isxd`` parts are sorted by
their start time (ties keep the user's order); series containing other formats keep the
user's order (those files have no start time). Outputs stay in the user's order, so
:class:`SeriesInfo` records both orders and, for every file in the user's order, its
frame range in the concatenated movie.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from cellextract.errors import InputError
from cellextract.io.base import DEFAULT_CHUNK, check_range, dtype_class, iter_chunks
from cellextract.io.movie import open_movie
from cellextract.log import get_logger

logger = get_logger(__name__)

#: Maximum difference of frame periods (seconds) within a series.
PERIOD_TOL = 1e-6


@dataclass
class SeriesInfo:
    """Description of a validated movie series (JSON round-trippable).

    All per-file lists are in the USER's order (the order the files were given).

    Attributes
    ----------
    files : list of str
        Movie paths in the user's order.
    time_order : list of int
        Indices into ``files`` in concatenation (time) order.
    n_frames : list of int
        Frames per file.
    frame_ranges : list of [int, int]
        ``[start, stop)`` of each file in the concatenated movie.
    fr : float or None
        Common frame rate in Hz (None when no file has one).
    dims : [int, int]
        Frame size ``(H, W)``.
    dtype : str
        Pixel type of the first file in time order (all files share its class).
    start_times : list of float or None
        Start time of each file in seconds (isxd), None when unknown.
    invalid : list of int
        Global indices (concatenated movie) of dropped/cropped/blank frames.
    formats : list of str
        Reader format per file ('isxd', 'tiff', 'video').
    frame_rates : list of float or None
        Frame rate of each file as read from its metadata.
    metadata : list of dict
        Per-file reader metadata (isxd extraProperties, timing, spacing, ...).
    """

    files: list[str]
    time_order: list[int]
    n_frames: list[int]
    frame_ranges: list[list[int]]
    fr: float | None
    dims: list[int]
    dtype: str
    start_times: list[float | None]
    invalid: list[int] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    frame_rates: list[float | None] = field(default_factory=list)
    metadata: list[dict] = field(default_factory=list)

    @property
    def total_frames(self) -> int:
        """Frames in the concatenated movie."""
        return int(sum(self.n_frames))

    @property
    def files_time_order(self) -> list[str]:
        """Paths in concatenation (time) order."""
        return [self.files[i] for i in self.time_order]

    @property
    def offsets(self) -> list[int]:
        """First global frame of each file, in the user's order."""
        return [r[0] for r in self.frame_ranges]

    @property
    def invalid_mask(self) -> np.ndarray:
        """Boolean mask ``(total_frames,)`` of invalid frames in the concatenated movie."""
        mask = np.zeros(self.total_frames, dtype=bool)
        mask[np.asarray(self.invalid, dtype=np.int64)] = True
        return mask

    def file_table(self) -> list[dict]:
        """One dict per file in the USER's order, for exporters.

        Keys: ``index`` (user position), ``path``, ``format``, ``time_rank`` (position in
        the concatenated movie), ``start_frame``/``stop_frame`` (global range),
        ``n_frames``, ``fr`` (the file's own, else the series'), ``start_time``,
        ``invalid`` (local indices of invalid frames), ``metadata``.
        """
        rank = {i: r for r, i in enumerate(self.time_order)}
        invalid = np.asarray(self.invalid, dtype=np.int64)
        rows = []
        for k, path in enumerate(self.files):
            start, stop = (int(v) for v in self.frame_ranges[k])
            local = invalid[(invalid >= start) & (invalid < stop)] - start
            fr_k = self.frame_rates[k] if self.frame_rates and self.frame_rates[k] else self.fr
            rows.append({"index": k, "path": path,
                         "format": self.formats[k] if self.formats else None,
                         "time_rank": rank[k], "start_frame": start, "stop_frame": stop,
                         "n_frames": stop - start, "fr": fr_k,
                         "start_time": self.start_times[k] if self.start_times else None,
                         "invalid": local.tolist(),
                         "metadata": self.metadata[k] if self.metadata else {}})
        return rows

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the series description to ``path`` (JSON)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{path}.partial")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "SeriesInfo":
        """Read a description written by :meth:`to_json`."""
        try:
            data = json.loads(Path(path).read_text())
            names = {f.name for f in dataclasses.fields(cls)}
            info = cls(**{k: v for k, v in data.items() if k in names})
        except FileNotFoundError:
            raise InputError(f"{path}: series description not found") from None
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}: not a valid series description: {exc}") from exc
        info.dims = [int(d) for d in info.dims]
        return info


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _check_paths(paths: Sequence) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("empty series: no movie files given")
    seen: dict[Path, Path] = {}
    for p in paths:
        key = p.resolve()
        if key in seen:
            raise InputError(f"{p}: file appears more than once in the series (duplicate of {seen[key]})")
        seen[key] = p
    return paths


def _check_same(readers: list, paths: list[Path]) -> float | None:
    """Raise InputError unless all readers share frame size, dtype class and frame rate."""
    ref, ref_path = readers[0], paths[0]
    for r, p in zip(readers[1:], paths[1:]):
        if tuple(r.dims) != tuple(ref.dims):
            raise InputError(f"series mismatch: {ref_path} is {ref.dims[0]}x{ref.dims[1]} px but {p} is "
                             f"{r.dims[0]}x{r.dims[1]} px (rows x cols); all files must have the same size")
        if dtype_class(r.dtype) != dtype_class(ref.dtype):
            raise InputError(f"series mismatch: {ref_path} has {np.dtype(ref.dtype).name} pixels but {p} "
                             f"has {np.dtype(r.dtype).name}; all files must have the same pixel type class")
    rated = [(r.fr, p) for r, p in zip(readers, paths) if r.fr is not None]
    for fr, p in rated[1:]:
        fr0, p0 = rated[0]
        if abs(1.0 / fr - 1.0 / fr0) > PERIOD_TOL:
            raise InputError(f"series mismatch: {p0} has frame rate {fr0:.6g} Hz but {p} has {fr:.6g} Hz; "
                             "all files must have the same frame rate")
    return rated[0][0] if rated else None


def _time_order(readers: list, paths: list[Path]) -> list[int]:
    """Indices in concatenation order: isxd-only series by start time, else user order."""
    idx = list(range(len(readers)))
    if not all(r.format == "isxd" and r.start_time is not None for r in readers):
        return idx
    order = sorted(idx, key=lambda i: readers[i].start_time)  # stable: ties keep user order
    for a, b in zip(order, order[1:]):
        ra, rb = readers[a], readers[b]
        end_a = ra.start_time + ra.n_frames / ra.fr if ra.fr else ra.start_time
        if rb.start_time < end_a - PERIOD_TOL:
            logger.warning("series: %s (start %.6g s) starts before %s (start %.6g s) ends at %.6g s",
                           paths[b], rb.start_time, paths[a], ra.start_time, end_a)
    if order != idx:
        logger.info("series: isxd parts concatenated by start time: %s",
                    ", ".join(str(paths[i]) for i in order))
    return order


def load_series(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> SeriesInfo:
    """Validate a movie series and describe its concatenation.

    Parameters
    ----------
    paths : sequence of str or path (or a single path)
        Movie files in the user's order.

    Returns
    -------
    SeriesInfo

    Raises
    ------
    InputError
        Empty series, duplicate file, any unreadable file, or a mismatch of frame size,
        pixel type class or frame rate (period difference > 1e-6 s) — naming the files.
    """
    paths = _check_paths(paths)
    readers = []
    try:
        for p in paths:
            readers.append(open_movie(p))
        fr = _check_same(readers, paths)
        order = _time_order(readers, paths)
        ranges: list[list[int]] = [[0, 0] for _ in paths]
        invalid: list[int] = []
        pos = 0
        for i in order:
            r = readers[i]
            ranges[i] = [pos, pos + r.n_frames]
            invalid.extend(int(pos + k) for k in np.flatnonzero(r.invalid))
            pos += r.n_frames
        first = readers[order[0]]
        return SeriesInfo(
            files=[str(p) for p in paths], time_order=order,
            n_frames=[int(r.n_frames) for r in readers], frame_ranges=ranges, fr=fr,
            dims=[int(d) for d in first.dims], dtype=np.dtype(first.dtype).name,
            start_times=[r.start_time for r in readers], invalid=sorted(invalid),
            formats=[r.format for r in readers], frame_rates=[r.fr for r in readers],
            metadata=[json.loads(json.dumps(r.metadata, default=_json_default)) for r in readers])
    finally:
        for r in readers:
            r.close()


class SeriesReader:
    """Reader over the concatenated (time-ordered) movie of a series.

    Same interface as :class:`cellextract.io.base.MovieReader` (``read``,
    ``iter_chunks``, ``n_frames``, ``dims``, ``dtype``, ``fr``, ``invalid``,
    ``start_time`` = earliest file start, ``metadata``) with global frame indices; reads
    may span file boundaries. Files are opened lazily, once, on first use.

    Parameters
    ----------
    info : SeriesInfo
        From :func:`load_series` (or :meth:`SeriesInfo.from_json`).
    """

    def __init__(self, info: SeriesInfo):
        self.info = info
        self.path = f"series[{', '.join(info.files_time_order)}]"
        self.n_frames = info.total_frames
        self.dims = (int(info.dims[0]), int(info.dims[1]))
        self.dtype = np.dtype(info.dtype)
        self.fr = info.fr
        self.invalid = info.invalid_mask
        starts = [t for t in info.start_times if t is not None]
        self.start_time = min(starts) if starts else None
        self.metadata = {"files": list(info.files), "time_order": list(info.time_order),
                         "per_file": info.metadata}
        self._order = list(info.time_order)
        self._starts = np.array([info.frame_ranges[i][0] for i in self._order], dtype=np.int64)
        self._stops = np.array([info.frame_ranges[i][1] for i in self._order], dtype=np.int64)
        self._readers: dict[int, object] = {}

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` of the concatenated movie."""
        return (self.n_frames, *self.dims)

    def __len__(self) -> int:
        return self.n_frames

    def _reader(self, i: int):
        """Open (once) the file at user index ``i`` and check it still matches the info."""
        if i not in self._readers:
            r = open_movie(self.info.files[i])
            if r.n_frames != self.info.n_frames[i] or tuple(r.dims) != self.dims:
                r.close()
                raise InputError(f"{self.info.files[i]}: file changed since the series was loaded "
                                 f"({r.n_frames} frames of {r.dims}, expected "
                                 f"{self.info.n_frames[i]} of {self.dims})")
            self._readers[i] = r
        return self._readers[i]

    def locate(self, t: int) -> tuple[int, int]:
        """Map global frame ``t`` to ``(user_file_index, local_frame_index)``."""
        k = int(np.searchsorted(self._stops, int(t), side="right"))
        if not 0 <= t < self.n_frames:
            raise IndexError(f"{self.path}: frame {t} outside 0:{self.n_frames}")
        return self._order[k], int(t - self._starts[k])

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Read global frames ``start:stop`` as ``(n, H, W)`` float32 (invalid frames NaN)."""
        start, stop = check_range(start, stop, self.n_frames, self.path)
        out = np.empty((stop - start, *self.dims), dtype=np.float32)
        for k, i in enumerate(self._order):
            lo, hi = max(start, self._starts[k]), min(stop, self._stops[k])
            if lo < hi:
                out[lo - start:hi - start] = self._reader(i).read(int(lo - self._starts[k]),
                                                                  int(hi - self._starts[k]))
        return out

    def iter_chunks(self, chunk: int = DEFAULT_CHUNK, *, start: int = 0,
                    stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(global_start, frames (n, H, W) float32)`` chunks."""
        yield from iter_chunks(self, chunk, start=start, stop=stop)

    def close(self) -> None:
        """Close all open files."""
        for r in self._readers.values():
            r.close()
        self._readers.clear()

    def __enter__(self) -> "SeriesReader":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def open_series(info: SeriesInfo | Sequence[str | os.PathLike] | str | os.PathLike) -> SeriesReader:
    """Open a reader over the concatenated series.

    Parameters
    ----------
    info : SeriesInfo, path of a ``series.json``, or a sequence of movie paths
        A sequence of movie paths is validated with :func:`load_series` first.

    Returns
    -------
    SeriesReader
    """
    if isinstance(info, SeriesInfo):
        return SeriesReader(info)
    if isinstance(info, (str, os.PathLike)) and str(info).endswith(".json"):
        return SeriesReader(SeriesInfo.from_json(info))
    return SeriesReader(load_series(info))
