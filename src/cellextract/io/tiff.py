"""TIFF movie reader (multi-page, BigTIFF, ImageJ hyperstacks, OME-TIFF).

Uncompressed contiguous files are memory-mapped (``tifffile.memmap``); anything else is
read page by page. Only the first series of the file is used. The frame axis is the one
non-singleton axis in front of ``YX``; files with several non-singleton leading axes
(e.g. a multi-channel or multi-plane hyperstack) are rejected. RGB(A) pages (``S``
axis) are converted to gray with the ITU-R BT.601 weights (as OpenCV does).
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tifffile

from cellextract.errors import InputError
from cellextract.io.base import MovieReader, one_line

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
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._tif = tifffile.TiffFile(self.path)
                series = self._tif.series[0]
                shape, axes = tuple(series.shape), series.axes
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{self.path}: not a readable TIFF file: {one_line(exc)}") from exc
        try:
            self._init_layout(series, shape, axes)
        except BaseException:
            self._tif.close()
            raise

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
        self._mm = self._try_memmap()
        self._series = series
        self.metadata["memmap"] = self._mm is not None
        if self._mm is None and len(series) != self.n_frames:
            raise InputError(f"{self.path}: TIFF stores {len(series)} pages for {self.n_frames} "
                             "frames and is not memory-mappable; unsupported layout")
        if self.dtype.kind not in "uifb":
            raise InputError(f"{self.path}: unsupported TIFF pixel type {self.dtype}")

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
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()
