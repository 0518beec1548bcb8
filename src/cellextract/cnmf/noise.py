"""Noise levels from the power spectrum and autoregressive (AR) time constants.

The noise of a trace is estimated from the high-frequency part of its periodogram,
where calcium signals have (almost) no power (Pnevmatikakis et al., Neuron 2016).
For white noise of variance ``sn**2`` the periodogram ``|rfft(y)|**2 / T`` has
expectation ``sn**2`` at every frequency and is exponentially distributed, so

- ``'mean'``: ``sn**2 = mean(P)``,
- ``'median'``: ``sn**2 = median(P) / ln 2`` (median of an exponential variable),
- ``'logmexp'``: ``sn**2 = exp(mean(log P) + euler_gamma)`` (mean of log of an exponential).

Frequencies are in cycles per sample (Nyquist = 0.5); ``noise_range=(0.25, 0.5)``
selects the upper half of the band.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from cellextract.errors import ParameterError

_EULER = 0.5772156649015329
_METHODS = ("mean", "median", "logmexp")


def _subsample_time(Y: np.ndarray, max_samples: int) -> np.ndarray:
    """Keep at most ``max_samples`` frames: three equal chunks (start, middle, end)."""
    T = Y.shape[-1]
    if max_samples is None or T <= max_samples:
        return Y
    n = max_samples // 3
    mid = T // 2 - n // 2
    return np.concatenate([Y[..., :n], Y[..., mid:mid + n], Y[..., T - n:]], axis=-1)


def noise_psd(Y: np.ndarray, *, noise_range=(0.25, 0.5), noise_method: str = "mean",
              max_samples: int | None = 3072) -> np.ndarray:
    """Noise standard deviation of each row of ``Y`` from its power spectrum.

    Parameters
    ----------
    Y : ndarray, shape (N, T) or (T,)
        Traces (pixels or components) in rows, time along the last axis.
    noise_range : (float, float)
        Frequency band in cycles/sample (0.5 = Nyquist) over which the spectrum is averaged.
    noise_method : {'mean', 'median', 'logmexp'}
        Averaging of the periodogram over the band (see module docstring).
    max_samples : int or None
        Use at most this many frames (three chunks at start, middle and end) so the cost
        does not grow with ``T``; None uses all frames.

    Returns
    -------
    sn : ndarray, shape (N,) or scalar, float32
        Noise standard deviation, same units as ``Y``.
    """
    if noise_method not in _METHODS:
        raise ParameterError(f"noise_method must be one of {_METHODS}, got {noise_method!r}")
    Y = np.asarray(Y)
    one = Y.ndim == 1
    Y2 = np.atleast_2d(Y).astype(np.float32, copy=False)
    Y2 = _subsample_time(Y2, max_samples)
    T = Y2.shape[-1]
    if T < 8:
        raise ParameterError(f"need at least 8 frames to estimate noise, got {T}")
    ff = np.fft.rfftfreq(T)
    sel = (ff > noise_range[0]) & (ff <= noise_range[1])
    if not sel.any():
        sel = ff > 0.25
    X = sfft.rfft(Y2 - Y2.mean(axis=-1, keepdims=True), axis=-1)[:, sel]
    P = (X.real ** 2 + X.imag ** 2) / T
    if noise_method == "mean":
        v = P.mean(axis=-1)
    elif noise_method == "median":
        v = np.median(P, axis=-1) / np.log(2.0)
    else:
        v = np.exp(np.mean(np.log(P + 1e-30), axis=-1) + _EULER)
    sn = np.sqrt(v).astype(np.float32)
    return sn[0] if one else sn


def noise_diff_mad(Y: np.ndarray) -> np.ndarray:
    """Noise standard deviation from the median absolute first difference.

    For white noise ``sn``, ``diff(y)`` has standard deviation ``sqrt(2) sn`` and
    ``median|diff - median(diff)| = 0.6745 sqrt(2) sn``. Calcium transients only add
    occasional large differences, so this is robust when activity is sparse, whereas the
    power-spectrum estimate is inflated by fast transients (decay of a few frames).

    Parameters
    ----------
    Y : ndarray, shape (N, T) or (T,)

    Returns
    -------
    sn : ndarray, shape (N,) or scalar, float32
    """
    Y = np.asarray(Y, dtype=np.float32)
    d = np.diff(Y, axis=-1)
    mad = np.median(np.abs(d - np.median(d, axis=-1, keepdims=True)), axis=-1)
    return (mad / (0.6745 * np.sqrt(2.0))).astype(np.float32)


def trace_noise(Y: np.ndarray, *, noise_range=(0.25, 0.5), noise_method: str = "mean") -> np.ndarray:
    """Noise of calcium traces: the smaller of the power-spectrum and difference estimates.

    Both estimators can only be inflated by the signal (fast transients inflate the
    spectrum's high band, dense activity inflates the differences), so the minimum is
    the less biased one.

    Parameters
    ----------
    Y : ndarray, shape (N, T) or (T,)

    Returns
    -------
    sn : ndarray, shape (N,) or scalar, float32
    """
    return np.minimum(noise_psd(Y, noise_range=noise_range, noise_method=noise_method),
                      noise_diff_mad(Y))


def autocovariance(y: np.ndarray, maxlag: int) -> np.ndarray:
    """Biased autocovariance of a trace for lags ``0..maxlag``.

    Parameters
    ----------
    y : ndarray, shape (T,)
    maxlag : int

    Returns
    -------
    ndarray, shape (maxlag + 1,), float64
    """
    y = np.asarray(y, dtype=np.float64)
    y = y - y.mean()
    T = y.size
    n = int(2 ** np.ceil(np.log2(2 * T - 1)))
    F = np.fft.rfft(y, n)
    ac = np.fft.irfft(F * np.conj(F), n)[: maxlag + 1]
    return ac / T


def ar_from_autocovariance(y: np.ndarray, *, p: int, sn: float, lags: int = 5,
                           fudge_factor: float = 0.96) -> np.ndarray:
    """AR(p) coefficients of a noisy trace from its autocovariance (Yule-Walker).

    Uses ``acov(tau) = sum_j g_j acov(tau - j)`` for ``tau = 1..p+lags`` with the noise
    variance ``sn**2`` removed from ``acov(0)``; the roots of the AR polynomial are
    shrunk by ``fudge_factor`` to reduce the upward bias of the estimate.

    Parameters
    ----------
    y : ndarray, shape (T,)
    p : int
        AR order (1 or 2).
    sn : float
        Noise standard deviation of ``y``.
    lags, fudge_factor : int, float

    Returns
    -------
    g : ndarray, shape (p,)
        Coefficients with ``c_t = sum_j g_j c_{t-j} + s_t``.
    """
    if p < 1:
        return np.zeros(0)
    ac = autocovariance(y, p + lags)
    ac[0] -= sn ** 2
    rows = np.arange(1, p + lags + 1)
    M = np.array([[ac[abs(t - j)] for j in range(1, p + 1)] for t in rows])
    g = np.linalg.lstsq(M, ac[rows], rcond=None)[0]
    roots = np.roots(np.concatenate([[1.0], -g])) * fudge_factor
    roots = np.where(np.abs(roots) >= 1.0, roots / np.abs(roots) * 0.999, roots)
    g = -np.real(np.poly(roots)[1:])
    return g


def g_from_decay(*, p: int, decay_time: float, fr: float,
                 rise_time: float | None = None) -> np.ndarray:
    """AR coefficients of the calcium kernel from its time constants.

    Parameters
    ----------
    p : int
        0 (no dynamics), 1 (decay only) or 2 (rise and decay).
    decay_time : float
        Decay time constant in seconds.
    fr : float
        Frame rate in Hz.
    rise_time : float or None
        Rise time constant in seconds for ``p = 2``; None uses ``decay_time / 8``.

    Returns
    -------
    g : ndarray, shape (p,)
        ``p = 1``: ``[exp(-1 / (decay_time * fr))]``; ``p = 2``: ``[d + r, -d * r]`` with
        ``d = exp(-1/(decay_time*fr))``, ``r = exp(-1/(rise_time*fr))``.
    """
    if p == 0:
        return np.zeros(0)
    if decay_time <= 0 or fr <= 0:
        raise ParameterError(f"decay_time ({decay_time}) and fr ({fr}) must be positive")
    d = float(np.exp(-1.0 / (decay_time * fr)))
    if p == 1:
        return np.array([d])
    if p == 2:
        rt = decay_time / 8.0 if rise_time is None else float(rise_time)
        r = float(np.exp(-1.0 / (rt * fr)))
        return np.array([d + r, -d * r])
    raise ParameterError(f"p must be 0, 1 or 2, got {p}")
