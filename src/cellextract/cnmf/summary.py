"""Summary images: correlation, peak-to-noise (PNR) and local correlation images.

Definitions (designed after CNMF-E, Zhou et al., eLife 2018):

* Every frame is filtered with the mean-centred Gaussian kernel
  (:func:`~cellextract.cnmf.filters.center_psf_kernel`, ``center_psf=True``) or a plain
  Gaussian (``center_psf=False``); the filter removes smooth one-photon background.
* Per pixel, the filtered trace ``f(t)`` gets a **baseline** ``b`` (median over time) and a
  **noise level** ``sigma`` from its power spectrum: the mean of ``|FFT|^2 / n`` over
  0.25-0.5 cycles/frame (the upper half of the band up to Nyquist), as CaImAn does, so
  ``min_pnr`` keeps CaImAn's meaning (:func:`~cellextract.cnmf.pixel_stats.psd_noise`; see
  :func:`~cellextract.cnmf.pixel_stats.baseline_noise` for the alternatives).
* ``pnr = max_t (f(t) - b) / sigma`` (clipped at 0).
* ``cn`` = mean Pearson correlation of each pixel's *thresholded* filtered trace with those
  of its 8 neighbours (fewer at the border), where the thresholded trace is
  ``x(t) = f(t) - b`` where ``f(t) - b >= noise_thr * sigma`` and 0 elsewhere, so noise
  and negative excursions do not create correlation.
* ``search = cn * pnr``.

Streaming: baseline and noise are estimated on "pilot" runs of (up to 200) consecutive
frames spread over the movie (about ``stats_frames`` frames in all), per run, and combined
by their median over runs (exact when one run covers a short movie); one pass over all
frames in blocks then accumulates the maximum and the correlation sums (float64), so memory is bounded by a few blocks whatever ``T``. The memmap
versions read blocks ``Yr[:, t0:t1]`` and work in the memmap's native transposed layout
``(n, W, H)`` with the transposed kernel (the 8-neighbour correlation is transpose
invariant), avoiding per-frame copies.

``local_correlation`` is the plain local correlation image of CNMF (2P ``Cn``): raw
traces, no filtering, no threshold.
"""

from __future__ import annotations

import cv2
import numpy as np

from cellextract.cnmf.filters import center_psf_kernel, gaussian_kernel, spatial_filter
# re-exported: these lived here before pixel_stats.py
from cellextract.cnmf.pixel_stats import (MAD_SCALE, _block_bounds, baseline_noise,  # noqa: F401
                                          fill_nonfinite, pilot_runs, psd_noise, to_frames,
                                          to_pixel_major)
from cellextract.errors import ParameterError
from cellextract.log import Progress, get_logger

__all__ = ["correlation_pnr", "correlation_pnr_memmap", "local_correlation",
           "local_correlation_memmap", "neighbour_correlation", "baseline_noise",
           "pilot_runs", "psd_noise", "search_image", "to_pixel_major", "to_frames",
           "summary_kernel", "MAD_SCALE"]

log = get_logger(__name__)

# the 4 neighbour offsets (dr, dc) whose mirror images give the other 4
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def summary_kernel(gSig, gSiz=None, *, center_psf: bool = True) -> np.ndarray:
    """Kernel used for the summary images: mean-centred Gaussian or plain Gaussian."""
    return center_psf_kernel(gSig, gSiz) if center_psf else gaussian_kernel(gSig, gSiz)


def search_image(cn: np.ndarray, pnr: np.ndarray) -> np.ndarray:
    """The corr_pnr search image ``cn * pnr``."""
    return (np.asarray(cn) * np.asarray(pnr)).astype(np.float32)


# --------------------------------------------------------------------------- sums


class _CorrSums:
    """Running sums for the 8-neighbour correlation of frames (n, a, b)."""

    def __init__(self, shape: tuple[int, int]):
        self.n = 0
        self.s1 = np.zeros(shape, np.float64)
        self.s2 = np.zeros(shape, np.float64)
        self.sx = [np.zeros(_overlap_shape(shape, s), np.float64) for s in _SHIFTS]

    def add(self, X: np.ndarray, *, pixel_major: bool = False) -> None:
        """Add frames ``X`` (n, a, b) float32, or traces (a, b, n) if ``pixel_major``."""
        if pixel_major:
            self.n += X.shape[2]
            self.s1 += X.sum(axis=2, dtype=np.float64)
            self.s2 += np.einsum("ijt,ijt->ij", X, X)
            for acc, s in zip(self.sx, _SHIFTS):
                x0, x1 = _pair_views(X[None], s)
                acc += np.einsum("ijt,ijt->ij", x0[0], x1[0])
            return
        self.n += X.shape[0]
        self.s1 += X.sum(axis=0, dtype=np.float64)
        self.s2 += np.einsum("tij,tij->ij", X, X)
        for acc, s in zip(self.sx, _SHIFTS):
            x0, x1 = _pair_views(X, s)
            acc += np.einsum("tij,tij->ij", x0, x1)

    def image(self) -> np.ndarray:
        """Mean correlation with the valid neighbours, shape (a, b), float32."""
        n = max(self.n, 1)
        m = self.s1 / n
        var = np.maximum(self.s2 / n - m * m, 0.0)
        sd = np.sqrt(var)
        tot = np.zeros_like(m)
        cnt = np.zeros_like(m)
        for acc, s in zip(self.sx, _SHIFTS):
            m0, m1 = _pair_views(m[None], s)
            sd0, sd1 = _pair_views(sd[None], s)
            den = sd0[0] * sd1[0]
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.where(den > 0, (acc / n - m0[0] * m1[0]) / den, 0.0)
            t0, t1 = _pair_views(tot[None], s)
            c0, c1 = _pair_views(cnt[None], s)
            t0[0] += r
            t1[0] += r
            c0[0] += 1
            c1[0] += 1
        return (tot / np.maximum(cnt, 1)).astype(np.float32)


def _overlap_shape(shape, s):
    dr, dc = s
    return (shape[0] - abs(dr), shape[1] - abs(dc))


def _pair_views(X: np.ndarray, s):
    """Views (x0, x1) of X (n, a, b) such that x1 is x0's neighbour at offset s."""
    dr, dc = s
    a, b = X.shape[1], X.shape[2]
    r0, r1 = slice(0, a - dr), slice(dr, a)
    if dc >= 0:
        c0, c1 = slice(0, b - dc), slice(dc, b)
    else:
        c0, c1 = slice(-dc, b), slice(0, b + dc)
    return X[:, r0, c0], X[:, r1, c1]


def neighbour_correlation(X: np.ndarray, *, pixel_major: bool = False) -> np.ndarray:
    """Mean correlation of each pixel's trace with its 8 neighbours.

    Parameters
    ----------
    X : ndarray, shape (T, h, w), or (h, w, T) if ``pixel_major``
        Traces (any baseline; constant traces get correlation 0).

    Returns
    -------
    ndarray, shape (h, w), float32
    """
    X = np.asarray(X, dtype=np.float32)
    acc = _CorrSums(X.shape[:2] if pixel_major else X.shape[1:])
    acc.add(X, pixel_major=pixel_major)
    return acc.image()


# --------------------------------------------------------------------------- core


def _filtered(read, a: int, b: int, kernel) -> np.ndarray:
    """Frames a:b from ``read`` (a fresh float32 array), filtered in place."""
    F = fill_nonfinite(read(a, b))
    return spatial_filter(F, kernel, out=F)


def _pilot_stats(read, runs, kernel, *, remove_baseline: bool):
    """Baseline / noise of each pilot run, combined by their median over runs."""
    bs, ss = zip(*(baseline_noise(_filtered(read, a, b, kernel), remove_baseline=remove_baseline)
                   for a, b in runs))
    if len(runs) == 1:
        return bs[0], ss[0]
    return (np.median(np.stack(bs), axis=0).astype(np.float32),
            np.median(np.stack(ss), axis=0).astype(np.float32))


def _threshold(F: np.ndarray, base: np.ndarray, sigma: np.ndarray, noise_thr: float) -> np.ndarray:
    """In place: F - base, values below noise_thr * sigma set to 0."""
    F -= base
    F[F < noise_thr * sigma] = 0.0
    return F


def _pnr(fmax, base, sigma):
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(sigma > 0, (fmax - base) / sigma, 0.0)
    return np.maximum(p, 0).astype(np.float32)


def _corr_pnr_stream(read, T: int, shape, kernel, *, block: int, stats_frames: int,
                     remove_baseline: bool, noise_thr: float, run_len: int = 200):
    """corr / PNR from frame blocks ``read(t0, t1) -> (n, a, b)`` float32.

    Baseline and noise come from pilot runs (all frames if ``stats_frames >= T``); then one
    pass over all frames accumulates the max and the correlation sums.
    """
    runs = pilot_runs(T, stats_frames, run_len=run_len)
    bounds = _block_bounds(T, block)
    if len(bounds) == 1 and runs == [(0, T)]:
        F = _filtered(read, 0, T, kernel)
        base, sigma = baseline_noise(F, remove_baseline=remove_baseline)
        pnr = _pnr(F.max(axis=0), base, sigma)
        return neighbour_correlation(_threshold(F, base, sigma, noise_thr)), pnr
    base, sigma = _pilot_stats(read, runs, kernel, remove_baseline=remove_baseline)
    prog = Progress(T, "summary-image frames", log)
    fmax = np.full(shape, -np.inf, np.float32)
    acc = _CorrSums(shape)
    for t0, t1 in bounds:
        F = _filtered(read, t0, t1, kernel)
        np.maximum(fmax, F.max(axis=0), out=fmax)
        acc.add(_threshold(F, base, sigma, noise_thr))
        prog.update(t1 - t0)
    return acc.image(), _pnr(fmax, base, sigma)


def _check_gsig(gSig):
    if gSig is None:
        raise ParameterError("gSig is required for the correlation / PNR images")


def correlation_pnr(Y: np.ndarray, *, gSig, gSiz=None, center_psf: bool = True,
                    remove_baseline: bool = True, noise_thr: float = 3.0,
                    stats_frames: int = 1000, chunk_frames: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Correlation and PNR images of an in-memory movie (e.g. one patch).

    Parameters
    ----------
    Y : ndarray, shape (T, h, w)
        Movie, float32 (raw intensity units).
    gSig : float or pair
        Gaussian width of the filter (pixels).
    gSiz : int or pair, optional
        Kernel size; default ``2 * ceil(2 * gSig) + 1``.
    center_psf : bool
        Mean-centred Gaussian (1P) instead of a plain Gaussian.
    remove_baseline : bool
        Subtract the per-pixel median of the filtered trace before max / threshold.
    noise_thr : float
        Threshold, in noise standard deviations, below which the filtered trace is set
        to 0 before correlating.
    stats_frames : int
        Baseline and noise are estimated from about this many frames: runs of 200
        consecutive frames spread over the movie, per run, median over runs (one run of
        all frames when ``T <= 200``).
    chunk_frames : int, optional
        Filter / accumulate in blocks of this many frames (bounded memory). Default: all.

    Returns
    -------
    cn : ndarray, shape (h, w), float32
        Correlation image, in [-1, 1].
    pnr : ndarray, shape (h, w), float32
        Peak-to-noise ratio (dimensionless, >= 0).
    """
    _check_gsig(gSig)
    Y = np.asarray(Y)
    if Y.ndim != 3:
        raise ParameterError(f"correlation_pnr expects a (T, h, w) movie, got shape {Y.shape}")
    k = summary_kernel(gSig, gSiz, center_psf=center_psf)
    T = Y.shape[0]
    return _corr_pnr_stream(lambda a, b: np.array(Y[a:b], dtype=np.float32), T, Y.shape[1:], k,
                            block=chunk_frames or T, stats_frames=stats_frames,
                            remove_baseline=remove_baseline, noise_thr=noise_thr)


def _memmap_reader(Yr, dims, frame_step: int):
    """read(j0, j1) -> frames (n, W, H) float32 of virtual frames j*frame_step."""
    H, W = dims

    def read(j0, j1):
        blk = np.ascontiguousarray(Yr[:, j0 * frame_step:j1 * frame_step:frame_step], dtype=np.float32)
        return cv2.transpose(blk).reshape(-1, W, H)  # cv2's tiled transpose: ~3x numpy's

    return read


def _frames_cap(P: int, n: int, max_block_bytes: float) -> int:
    return int(max(16, min(n, max_block_bytes // (4 * P))))


def correlation_pnr_memmap(Yr, dims, *, gSig, gSiz=None, center_psf: bool = True,
                           remove_baseline: bool = True, noise_thr: float = 3.0,
                           chunk_frames: int = 1000, frame_step: int = 1,
                           stats_frames: int = 1000, max_block_bytes: float = 256e6
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Correlation and PNR images streamed from a CaImAn memmap.

    Parameters
    ----------
    Yr : array-like, shape (H*W, T)
        Movie, C order, Fortran pixel order (``Yr[:, t] == frame.ravel(order="F")``).
    dims : (int, int)
        ``(H, W)``.
    gSig, gSiz, center_psf, remove_baseline, noise_thr
        As in :func:`correlation_pnr`.
    chunk_frames : int
        Frames per block, capped so one float32 block stays below ``max_block_bytes``.
    frame_step : int
        Use every ``frame_step``-th frame only (faster, approximate).
    stats_frames : int
        Frames used for baseline / noise; see :func:`correlation_pnr`.
    max_block_bytes : float
        Memory cap for one block of frames, bytes. Peak memory is about 4 blocks.

    Returns
    -------
    cn, pnr : ndarray, shape (H, W), float32
        Equal (up to float rounding) to :func:`correlation_pnr` on the same frames with
        the same ``stats_frames``.
    """
    _check_gsig(gSig)
    H, W = (int(d) for d in dims)
    P, T = Yr.shape
    if P != H * W:
        raise ParameterError(f"memmap has {P} pixels but dims {dims} give {H * W}")
    step = max(1, int(frame_step))
    Tv = (T + step - 1) // step
    k = summary_kernel(gSig, gSiz, center_psf=center_psf)
    cn, pnr = _corr_pnr_stream(_memmap_reader(Yr, (H, W), step), Tv, (W, H), k.T,
                               block=_frames_cap(P, chunk_frames, max_block_bytes),
                               stats_frames=stats_frames,
                               run_len=_frames_cap(P, 200, max_block_bytes),
                               remove_baseline=remove_baseline, noise_thr=noise_thr)
    return np.ascontiguousarray(cn.T), np.ascontiguousarray(pnr.T)


def local_correlation(Y: np.ndarray) -> np.ndarray:
    """Local (8-neighbour) correlation image of the raw movie (CNMF's ``Cn``).

    Parameters
    ----------
    Y : ndarray, shape (T, h, w)

    Returns
    -------
    ndarray, shape (h, w), float32
    """
    Y = fill_nonfinite(np.array(Y, dtype=np.float32))
    return neighbour_correlation(Y - Y.mean(axis=0))


def local_correlation_memmap(Yr, dims, *, chunk_frames: int = 1000, frame_step: int = 1,
                             max_block_bytes: float = 256e6) -> np.ndarray:
    """Local correlation image streamed from a CaImAn memmap ``(H*W, T)``.

    The first block's per-pixel mean is subtracted from all blocks before accumulating
    sums (correlation is shift invariant; this keeps float32 block sums accurate).

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    H, W = (int(d) for d in dims)
    P, T = Yr.shape
    if P != H * W:
        raise ParameterError(f"memmap has {P} pixels but dims {dims} give {H * W}")
    step = max(1, int(frame_step))
    Tv = (T + step - 1) // step
    read = _memmap_reader(Yr, (H, W), step)
    acc = _CorrSums((W, H))
    ref = None
    for t0, t1 in _block_bounds(Tv, _frames_cap(P, chunk_frames, max_block_bytes)):
        X = fill_nonfinite(read(t0, t1))
        if ref is None:
            ref = X.mean(axis=0)
        X -= ref
        acc.add(X)
    return np.ascontiguousarray(acc.image().T)
