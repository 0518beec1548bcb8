"""TIFF movie reader (multi-page, BigTIFF, ImageJ hyperstacks, OME-TIFF).

Uncompressed contiguous files are located with ``tifffile.memmap`` and read with
``pread`` in chunks (no per-page decoding, no long-lived map); anything else is read page
by page. Only the first series of the file is used. The frame axis is the one
non-singleton axis in front of ``YX``; files with several non-singleton leading axes
(e.g. a multi-channel or multi-plane hyperstack) are rejected. RGB(A) pages (``S``
axis) are converted to gray with the ITU-R BT.601 weights (as OpenCV does).
"""

from __future__ import annotations

import logging
import math
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tifffile

from cellextract.errors import InputError
from cellextract.io.base import FrameFile, MovieReader, one_line

_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}


def _fr_from_interval(interval) -> float | None:
    try:
        dt = float(interval)
    except (TypeError, ValueError):
        return None
    return 1.0 / dt if dt > 0 and math.isfinite(dt) else None


def _fr_from_ome(xml: str | None) -> float | None:
    """Frame rate from OME-XML ``Pixels@TimeIncrement`` (with its unit), else None."""
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Pixels" and "TimeIncrement" in el.attrib:
            unit = _TIME_UNITS.get(el.attrib.get("TimeIncrementUnit", "s"), 1.0)
            try:
                return _fr_from_interval(float(el.attrib["TimeIncrement"]) * unit)
            except ValueError:
                return None
    return None


def tiff_frame_rate(tif: tifffile.TiffFile) -> float | None:
    """Frame rate in Hz from ImageJ ``finterval``/``fps``, OME ``TimeIncrement`` or
    tifffile shaped metadata (``finterval``/``fps``); None when absent."""
    ij = tif.imagej_metadata or {}
    fr = _fr_from_interval(ij.get("finterval"))
    if fr is None and ij.get("fps"):
        fr = _fr_from_interval(1.0 / float(ij["fps"])) if float(ij["fps"]) > 0 else None
    if fr is None and tif.is_ome:
        fr = _fr_from_ome(tif.ome_metadata)
    if fr is None and tif.shaped_metadata:
        meta = tif.shaped_metadata[0] or {}
        fr = _fr_from_interval(meta.get("finterval"))
        if fr is None and meta.get("fps"):
            fr = float(meta["fps"])
    return fr


_CORRUPT_LOG = ("invalid page offset", "corrupt", "failed to reshape", "truncat", "invalid tag")


class _TiffLogCapture(logging.Handler):
    """Collect (and silence) tifffile's warnings about damaged files while opening."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._logger = logging.getLogger("tifffile")

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))

    def __enter__(self) -> "_TiffLogCapture":
        self._propagate = self._logger.propagate
        self._logger.addHandler(self)
        self._logger.propagate = False
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate

    def corruption(self) -> str | None:
        """The first message that signals a damaged file, else None."""
        for m in self.messages:
            if any(k in m.lower() for k in _CORRUPT_LOG):
                return m
        return None


def _metadata_mismatch(tif: tifffile.TiffFile, series, n_frames: int) -> str | None:
    """Describe a disagreement between the stored data and the ImageJ ``images`` count
    or the tifffile shaped ``shape``; None when they agree or there is no such metadata."""
    ij = tif.imagej_metadata or {}
    if ij.get("images") and int(ij["images"]) != n_frames:
        return f"ImageJ metadata promise {int(ij['images'])} images but {n_frames} were found"
    shaped = tif.shaped_metadata[0].get("shape") if tif.shaped_metadata else None
    found = int(np.prod(series.shape, dtype=np.int64))
    if shaped and int(np.prod(shaped, dtype=np.int64)) != found:
        return f"metadata promise shape {tuple(shaped)} but {tuple(series.shape)} was found"
    return None


def _check_intact(path, tif: tifffile.TiffFile, series, n_frames: int) -> None:
    """Raise InputError for a truncated/corrupt TIFF (short data or metadata mismatch)."""
    problem = _metadata_mismatch(tif, series, n_frames)
    if problem is None:
        size = Path(path).stat().st_size
        last = series.pages[len(series) - 1] if len(series) else None
        offsets = getattr(last, "dataoffsets", ()) or ()
        counts = getattr(last, "databytecounts", ()) or ()
        ends = [o + c for o, c in zip(offsets, counts)]
        if ends and max(ends) > size:
            problem = f"last page's data end at byte {max(ends)} beyond the file size {size}"
        elif len(series) == 1 and int(np.prod(series.shape)) * series.dtype.itemsize + (
                offsets[0] if offsets else 0) > size:
            problem = "contiguous image data extend beyond the end of the file"
    if problem:
        raise InputError(f"{path}: corrupt or truncated TIFF ({problem})")


def _frame_layout(path, shape: tuple[int, ...], axes: str) -> tuple[int, bool]:
    """Return ``(n_frames, has_samples_axis)`` for a series ``shape``/``axes``."""
    rgb = axes.endswith("S") and shape[-1] in (3, 4)
    spatial = 3 if rgb else 2
    if len(shape) < spatial:
        raise InputError(f"{path}: TIFF series has shape {shape} (axes {axes}), not an image stack")
    lead = shape[:-spatial]
    nonsingleton = [a for a, n in zip(axes[:-spatial], lead) if n > 1]
    if len(nonsingleton) > 1:
        raise InputError(f"{path}: TIFF has several frame axes {''.join(nonsingleton)} "
                         f"(shape {shape}, axes {axes}); only single-channel single-plane "
                         "movies are supported")
    return int(np.prod(lead, dtype=np.int64)), rgb


def _frame_file(path, mm: np.ndarray, n_frames: int, dims) -> FrameFile | None:
    """A :class:`FrameFile` over the contiguous data that ``mm`` (a tifffile memmap) maps."""
    base = mm
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    if base is None or getattr(base, "offset", None) is None:
        return None
    if mm.size != n_frames * dims[0] * dims[1] or not mm.flags.c_contiguous:
        return None
    return FrameFile(path, int(base.offset), n_frames, dims, mm.dtype)


class TiffReader(MovieReader):
    """Reader for ``.tif``/``.tiff`` movies (see module docstring).

    Parameters
    ----------
    path : str or path
        The TIFF file.
    """

    format = "tiff"

    def __init__(self, path):
        self.path = Path(path)
        with warnings.catch_warnings(), _TiffLogCapture() as log:
            warnings.simplefilter("ignore")
            try:
                self._tif = tifffile.TiffFile(self.path)
            except Exception as exc:
                raise InputError(f"{self.path}: not a readable TIFF file: {one_line(exc)}") from exc
            try:
                self._open(log)
            except InputError:
                self.close()
                raise
            except Exception as exc:
                self.close()
                raise InputError(f"{self.path}: corrupt or truncated TIFF: {one_line(exc)}") from exc

    def _open(self, log: _TiffLogCapture) -> None:
        if not self._tif.series:
            raise InputError(f"{self.path}: TIFF contains no images")
        series = self._tif.series[0]
        shape, axes = tuple(series.shape), series.axes
        self._tif.imagej_metadata, self._tif.shaped_metadata  # parse while capturing the log
        if log.corruption():
            raise InputError(f"{self.path}: corrupt or truncated TIFF ({log.corruption()})")
        self._init_layout(series, shape, axes)
        _check_intact(self.path, self._tif, series, self.n_frames)

    def _init_layout(self, series, shape, axes) -> None:
        self.n_frames, self._rgb = _frame_layout(self.path, shape, axes)
        h, w = shape[-3:-1] if self._rgb else shape[-2:]
        self.dims = (int(h), int(w))
        self.dtype = np.dtype(series.dtype)
        self.fr = tiff_frame_rate(self._tif)
        self.start_time = None
        self.invalid = np.zeros(self.n_frames, dtype=bool)
        self.metadata = {"axes": axes, "shape": list(shape), "bigtiff": bool(self._tif.is_bigtiff),
                         "imagej": bool(self._tif.is_imagej), "ome": bool(self._tif.is_ome)}
        if self.dtype.kind not in "uifb":
            raise InputError(f"{self.path}: unsupported TIFF pixel type {self.dtype}")
        self._mm = self._try_memmap()
        self._frames = None
        if self._mm is not None and not self._rgb and True:
            self._frames = _frame_file(self.path, self._mm, self.n_frames, self.dims)
            if self._frames is not None:
                self._mm = None  # read with pread: a long-lived map keeps the pages read resident
        self._series = series
        self.metadata["memmap"] = self._mm is not None or self._frames is not None
        if self.metadata["memmap"] is False and len(series) != self.n_frames:
            raise InputError(f"{self.path}: TIFF stores {len(series)} pages for {self.n_frames} "
                             "frames and is not memory-mappable; unsupported layout")

    def _try_memmap(self) -> np.ndarray | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mm = tifffile.memmap(self.path, series=0, mode="r")
        except Exception:
            return None
        frame_shape = (*self.dims, mm.shape[-1]) if self._rgb else self.dims
        expected = self.n_frames * int(np.prod(frame_shape))
        if mm.size != expected:
            return None
        return mm.reshape(self.n_frames, *frame_shape)

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._frames is not None:
            return self._frames.read(start, stop)
        if self._mm is not None:
            data = np.asarray(self._mm[start:stop])
        else:
            data = self._tif.asarray(key=slice(start, stop), series=0, maxworkers=1)
        frame_shape = (*self.dims, -1) if self._rgb else self.dims
        data = np.asarray(data).reshape(stop - start, *frame_shape)
        if self._rgb:
            return data[..., :3].astype(np.float32) @ _GRAY_WEIGHTS
        return np.array(data, dtype=np.float32)  # a private writable copy, never the file map

    def close(self) -> None:
        self._mm = None
        if getattr(self, "_frames", None) is not None:
            self._frames.close()
        self._frames = None
        tif = getattr(self, "_tif", None)
        self._tif = None
        if tif is not None:
            tif.close()
