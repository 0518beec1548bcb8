"""Timing and spacing of the per-file Inscopix outputs.

Each input file of a series is described by a plain dict (user order)::

    {"path": str, "start_frame": int,   # first frame in the concatenated movie
     "n_frames": int, "period_s": float, "start_time_s": float | None,
     "invalid_mask": bool array (n_frames,) | None,   # dropped / cropped frames
     "is_isxd": bool, "fr": float (optional, exact frame rate in Hz)}

For isxd inputs the timing (start, rational period, dropped and cropped frames) and
the spacing are taken from the file itself; for tif/avi inputs they are built from the
frame rate with an exact rational period (``isx.Duration`` stores num/den, so 30 Hz is
exactly 1/30 s, not 33 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import isx
import numpy as np

from cellextract.errors import InputError
from cellextract.export.isxd_header import read_extra_properties
from cellextract.log import get_logger

__all__ = ["normalize_files", "FileTiming", "simplest_fraction", "file_timing", "sample_offsets_us", "copy_timing",
           "copy_spacing"]

log = get_logger(__name__)


def _normalize_one(row: dict) -> dict:
    """Accept a ``SeriesInfo.file_table()`` row or our own description (see module doc)."""
    out = dict(row)
    n = int(row["n_frames"])
    if "period_s" not in out:
        fr = row.get("fr")
        out["period_s"] = 1.0 / float(fr) if fr else None
    if "start_time_s" not in out:
        out["start_time_s"] = row.get("start_time")
    if "invalid_mask" not in out:
        idx = row.get("invalid")
        mask = None
        if idx is not None and len(idx):
            mask = np.zeros(n, dtype=bool)
            mask[np.asarray(idx, dtype=np.int64)] = True
        out["invalid_mask"] = mask
    if "is_isxd" not in out:
        fmt = row.get("format") or str(row.get("path", "")).rsplit(".", 1)[-1]
        out["is_isxd"] = str(fmt).lower() == "isxd"
    return out


def normalize_files(files: list[dict]) -> list[dict]:
    """Input descriptions in the exporters' form.

    Parameters
    ----------
    files : list of dict
        Either our keys (``path, start_frame, n_frames, period_s, start_time_s,
        invalid_mask, is_isxd``) or the rows of ``SeriesInfo.file_table()`` (``path,
        format, start_frame, n_frames, fr, start_time, invalid`` local indices); missing
        keys of ours are derived from theirs.

    Returns
    -------
    list of dict
        Same order, with all of our keys present.
    """
    return [_normalize_one(f) for f in files]


@dataclass
class FileTiming:
    """Timing of one output file.

    Attributes
    ----------
    timing : isx.Timing
        Samples, start, period, dropped and cropped frames.
    spacing : isx.Spacing
        Pixel grid, ``num_pixels == (H, W)``.
    period : fractions.Fraction
        Exact sample period in seconds.
    invalid : ndarray of bool, shape (n_frames,)
        Samples without data (dropped, cropped or masked by the reader).
    extra_properties : dict
        ``extraProperties`` of the input isxd file ({} for other formats).
    """

    timing: isx.Timing
    spacing: isx.Spacing
    period: Fraction
    invalid: np.ndarray
    extra_properties: dict


def simplest_fraction(x: float, *, tol: float) -> Fraction:
    """Return the fraction with the smallest power-of-ten denominator bound within ``tol`` of ``x``.

    ``simplest_fraction(1 / 30, tol=1e-12) == Fraction(1, 30)``;
    ``simplest_fraction(29.97, tol=1e-9) == Fraction(2997, 100)``.
    """
    exact = Fraction(float(x))
    for digits in range(0, 10):
        f = exact.limit_denominator(10 ** digits)
        if abs(f - exact) <= tol:
            return f
    return exact.limit_denominator(10 ** 9)


def _period_from(file: dict) -> Fraction:
    fr = file.get("fr")
    if fr is None:
        period_s = file.get("period_s")
        if period_s is None or not period_s > 0:
            raise InputError(f"{file.get('path')}: no frame period or frame rate")
        fr = 1.0 / float(period_s)
    if not fr > 0:
        raise InputError(f"{file.get('path')}: frame rate must be positive, got {fr}")
    return 1 / simplest_fraction(fr, tol=1e-9 * fr)


def _isx_duration(f: Fraction) -> isx.Duration:
    return isx.Duration._from_num_den(f.numerator, f.denominator)


def _start_from(file: dict) -> isx.Time:
    start = file.get("start_time_s")
    start = 0.0 if start is None else float(start)
    frac = simplest_fraction(start, tol=1e-7)
    return isx.Time._from_secs_since_epoch(_isx_duration(frac))


def _mask(file: dict, n: int) -> np.ndarray:
    m = file.get("invalid_mask")
    if m is None:
        return np.zeros(n, dtype=bool)
    m = np.asarray(m, dtype=bool).ravel()
    if m.size != n:
        raise InputError(f"{file.get('path')}: invalid_mask has {m.size} values for {n} frames")
    return m


def _built_timing(file: dict, dims: tuple[int, int]) -> FileTiming:
    n = int(file["n_frames"])
    period = _period_from(file)
    invalid = _mask(file, n)
    timing = isx.Timing(num_samples=n, period=_isx_duration(period), start=_start_from(file),
                        dropped=np.flatnonzero(invalid).tolist())
    return FileTiming(timing, isx.Spacing(num_pixels=tuple(int(d) for d in dims)), period,
                      invalid, {})


def copy_timing(t: isx.Timing) -> isx.Timing:
    """Deep copy of an ``isx.Timing`` (those of a reader point into its memory)."""
    step, start = t._impl.step, t._impl.start
    period = isx.Duration._from_num_den(int(step.num), int(step.den))
    since = isx.Duration._from_num_den(int(start.secs_since_epoch.num),
                                       int(start.secs_since_epoch.den))
    return isx.Timing(num_samples=int(t.num_samples), period=period,
                      start=isx.Time._from_secs_since_epoch(since, int(start.utc_offset)),
                      dropped=list(t.dropped), cropped=list(t.cropped), blank=list(t.blank))


def copy_spacing(s: isx.Spacing) -> isx.Spacing:
    """Deep copy of an ``isx.Spacing`` (a plain struct without pointers)."""
    return isx.Spacing._from_impl(type(s._impl).from_buffer_copy(s._impl))


def _isxd_timing(file: dict, dims: tuple[int, int]) -> FileTiming:
    path = str(file["path"])
    movie = isx.Movie.read(path)
    timing, spacing = copy_timing(movie.timing), copy_spacing(movie.spacing)
    del movie
    n = int(file["n_frames"])
    if timing.num_samples != n:
        raise InputError(f"{path}: the movie has {timing.num_samples} frames, the series "
                         f"description says {n}")
    if tuple(spacing.num_pixels) != tuple(dims):
        log.warning("%s: movie is %s px, model is %s px; writing a plain spacing",
                    path, spacing.num_pixels, dims)
        spacing = isx.Spacing(num_pixels=tuple(int(d) for d in dims))
    period = Fraction(int(timing.period._impl.num), int(timing.period._impl.den))
    invalid = ~timing.get_valid_samples_mask() | _mask(file, n)
    return FileTiming(timing, spacing, period, invalid, read_extra_properties(path))


def file_timing(file: dict, dims: tuple[int, int]) -> FileTiming:
    """Return the timing, spacing and metadata of the outputs for one input file.

    Parameters
    ----------
    file : dict
        Description of the input file (see module docstring).
    dims : tuple of int
        ``(H, W)`` of the model's footprints.

    Returns
    -------
    FileTiming
        From the isxd file itself when ``is_isxd`` and readable, else built from the
        frame rate, start time and invalid mask of ``file``.
    """
    if file.get("is_isxd"):
        try:
            return _isxd_timing(file, dims)
        except InputError:
            raise
        except Exception as exc:  # file moved or unreadable: keep going from the dict
            log.warning("%s: cannot read isxd timing (%s); building it from the frame rate",
                        file.get("path"), exc)
    return _built_timing(file, dims)


def sample_offsets_us(n: int, period: Fraction) -> np.ndarray:
    """Offsets of samples ``0..n-1`` from the file start, in whole microseconds.

    Parameters
    ----------
    n : int
        Number of samples.
    period : fractions.Fraction
        Exact period in seconds.

    Returns
    -------
    ndarray of uint64, shape (n,)
        ``round(i * period * 1e6)`` computed in exact integer arithmetic.
    """
    num = period.numerator * 10 ** 6
    den = period.denominator
    i = np.arange(n, dtype=object)
    off = (2 * i * num + den) // (2 * den)
    return np.asarray(off, dtype=np.uint64)
