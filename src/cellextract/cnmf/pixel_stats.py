"""Per-pixel statistics of filtered frames for the summary images and the initialisation:
frame / pixel-major layouts, the pilot runs, baseline (median) and noise level (power
spectrum, MAD of differences), and the filling of non-finite pixels."""

from __future__ import annotations

import cv2
import numpy as np
import scipy.fft as sp_fft

from cellextract.errors import ParameterError

__all__ = ["MAD_SCALE", "pilot_runs", "to_pixel_major", "to_frames", "psd_noise",
           "baseline_noise", "fill_nonfinite"]

MAD_SCALE = 1.4826 / np.sqrt(2.0)
"""Factor turning ``median(|diff|)`` of a white-noise trace into its standard deviation."""


def _block_bounds(T: int, n: int) -> list[tuple[int, int]]:
    """Split range(T) into near-equal blocks of at most n frames."""
    nb = max(1, int(np.ceil(T / max(1, n))))
    edges = np.linspace(0, T, nb + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def pilot_runs(T: int, n_frames: int, *, run_len: int = 200) -> list[tuple[int, int]]:
    """Runs of ``run_len`` consecutive frames (about ``n_frames`` in all) spread evenly
    over ``range(T)``; one run of all frames when ``n_frames >= T`` and ``run_len >= T``."""
    n_frames, run_len = int(n_frames), max(2, int(run_len))
    if n_frames >= T and run_len >= T:
        return [(0, T)]
    L = min(run_len, T)
    n_runs = max(1, int(round(min(n_frames, T) / L)))
    starts = np.linspace(0, T - L, n_runs).round().astype(int)
    return [(int(s), int(s) + L) for s in starts]


def to_pixel_major(F: np.ndarray) -> np.ndarray:
    """Frames (n, a, b) -> contiguous pixel-major traces (a, b, n), float32 (cv2 transpose)."""
    n, a, b = F.shape
    return _pixel_major(F).reshape(a, b, n)


def to_frames(Fp: np.ndarray) -> np.ndarray:
    """Pixel-major traces (a, b, n) -> contiguous frames (n, a, b), float32."""
    a, b, n = Fp.shape
    X = np.ascontiguousarray(Fp.reshape(a * b, n), dtype=np.float32)
    return (cv2.transpose(X) if n > 1 else X.T.copy()).reshape(n, a, b)


def _pixel_major(F: np.ndarray) -> np.ndarray:
    """(n, a, b) -> contiguous (a*b, n)."""
    X = np.ascontiguousarray(F.reshape(F.shape[0], -1), dtype=np.float32)
    return cv2.transpose(X) if X.shape[0] > 1 else X.T.copy()


def _row_median(X: np.ndarray) -> np.ndarray:
    """Median of each row of a C-contiguous (m, n) array (upper median for even n), in place."""
    k = X.shape[1] // 2
    X.partition(k, axis=1)
    return X[:, k].copy()


def psd_noise(X: np.ndarray, *, band=(0.25, 0.5), rows: int = 8192) -> np.ndarray:
    """Noise standard deviation of each row of ``X`` (m, n) from its power spectrum.

    ``sigma^2`` is the mean of ``|rfft(x - mean)|^2 / n`` over the frequencies in ``band``
    (cycles per frame; (0.25, 0.5) is the upper half of the spectrum up to Nyquist), which
    equals the variance for white noise (CaImAn's ``noise_method='mean'``). Calcium
    transients leak some power into the band, so active pixels get a somewhat larger
    estimate than the pure noise (as in CaImAn).

    Returns
    -------
    ndarray, shape (m,), float32
    """
    n = X.shape[1]
    freqs = np.fft.rfftfreq(n)
    sel = (freqs >= band[0]) & (freqs <= band[1])
    out = np.empty(X.shape[0], np.float32)
    if n < 4 or not sel.any():
        out[:] = np.std(X, axis=1) if n > 1 else 0.0
        return out
    for r0 in range(0, X.shape[0], rows):
        blk = X[r0:r0 + rows]
        Z = sp_fft.rfft(blk - blk.mean(axis=1, keepdims=True), axis=1)[:, sel]
        out[r0:r0 + rows] = np.sqrt((Z.real ** 2 + Z.imag ** 2).mean(axis=1) / n)
    return out


def _mad_diff_noise(X: np.ndarray, rows: int = 8192) -> np.ndarray:
    """Noise std of each row of ``X`` (m, n) from the median absolute first difference."""
    out = np.empty(X.shape[0], np.float32)
    for r0 in range(0, X.shape[0], rows):
        d = np.abs(np.diff(X[r0:r0 + rows], axis=1))
        out[r0:r0 + rows] = _row_median(d) * np.float32(MAD_SCALE)
    return out


def baseline_noise(F: np.ndarray, *, remove_baseline: bool = True, pixel_major: bool = False,
                   noise_method: str = "psd"):
    """Per-pixel baseline (median) and noise level of filtered frames.

    Parameters
    ----------
    F : ndarray, shape (n, a, b), or (a, b, n) if ``pixel_major``
        Filtered consecutive frames.
    noise_method : {'robust', 'psd', 'mad'}
        ``'psd'`` (default): :func:`psd_noise` (CaImAn's definition); ``'mad'``: the robust MAD of
        first differences (``1.4826 * median|diff| / sqrt(2)``; insensitive to sparse
        transients); ``'robust'``: the smaller of the two. Both equal the noise
        standard deviation on pixels without signal (white noise), and each can only be
        inflated by signal: fast calcium transients (decay of a few frames, as in 1P data
        at 10 Hz) put power in the upper half of the spectrum and inflate the PSD estimate
        on the pixels that hold neurons, while dense activity inflates the differences;
        the minimum is the less biased noise estimate. Measured on the bench_1p simulator
        (bench/RESULTS_cnmfe.md) 'robust' raised recall at 1500 frames but admitted more
        false positives (vessel edges) at 3000, so 'psd' stays the default.

    Returns
    -------
    base, sigma : ndarray, shape (a, b), float32
    """
    if pixel_major:
        shape = F.shape[:2]
        Ft = np.array(F.reshape(-1, F.shape[2]), dtype=np.float32, order="C")
    else:
        shape = F.shape[1:]
        Ft = _pixel_major(F)
    if noise_method not in ("robust", "psd", "mad"):
        raise ParameterError(f"noise_method must be 'robust', 'psd' or 'mad', got {noise_method!r}")
    if noise_method in ("psd", "robust"):
        sigma = psd_noise(Ft)
    if noise_method in ("mad", "robust") and Ft.shape[1] > 2:
        mad = _mad_diff_noise(Ft)
        sigma = mad if noise_method == "mad" else np.minimum(sigma, mad)
    base = _row_median(Ft) if remove_baseline else np.zeros(Ft.shape[0], np.float32)
    return base.reshape(shape).astype(np.float32), sigma.reshape(shape).astype(np.float32)


def fill_nonfinite(F: np.ndarray) -> np.ndarray:
    """In place: replace NaN / inf (e.g. motion-correction borders with ``border_nan``)
    by the median of the finite values of the same array."""
    bad = ~np.isfinite(F)
    if bad.any():
        good = F[~bad]
        F[bad] = np.median(good) if good.size else 0.0
    return F
