"""Signal-to-noise ratio of component traces from the exceptionality of their largest transient.

Definition (CaImAn's evaluation, Giovannucci et al., eLife 2019, "Automated component
evaluation"): for each raw trace ``y = C + YrA``

1. a slow baseline (running low percentile) is removed;
2. the trace's mode ``m`` is estimated robustly (half-sample mode) and the noise level
   ``sd`` from the downward fluctuations only: ``sd**2 = mean((y - m)**2 | y < m)``
   (the negative half mirrored, so transients do not inflate it);
3. every sample gets a Gaussian tail log-probability
   ``log P(Z >= (y_t - m) / (sigma_factor * sd))``;
4. these are summed over sliding windows of ``N = ceil(fr * decay_time)`` consecutive samples;
   the minimum over windows (``fitness``) is the log-probability of the most exceptional
   event under the noise model;
5. ``SNR = -Phi^-1(exp(fitness / N))``: the z value whose tail probability equals the per-sample
   geometric mean probability of that event.

``sigma_factor = 3`` is CaImAn's choice, so SNR thresholds (``min_SNR``, ``SNR_lowest``) keep
their CaImAn meaning. Everything is vectorised over components.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["remove_baseline", "mode_robust", "downward_sd", "event_exceptionality", "fitness_to_snr",
           "compute_snr", "n_event_samples"]


def n_event_samples(fr: float, decay_time: float) -> int:
    """Number of consecutive samples of an event, ``N = ceil(fr * decay_time)`` (at least 1).

    Parameters
    ----------
    fr : float
        Frame rate in Hz.
    decay_time : float
        Typical transient length in seconds.
    """
    return max(1, int(math.ceil(float(fr) * float(decay_time) - 1e-9)))


def remove_baseline(traces: np.ndarray, *, percentile: float = 8.0,
                    window: int | None = None) -> np.ndarray:
    """Subtract a slowly varying low-percentile baseline from each trace.

    The trace is cut into ``round(T / window)`` equal consecutive blocks; the ``percentile`` of
    each block is placed at the block centre and linearly interpolated (constant beyond the first
    and last centres).

    Parameters
    ----------
    traces : ndarray, shape (K, T)
        Raw traces (any units).
    percentile : float
        Percentile defining the baseline (CaImAn uses 8).
    window : int or None
        Block length in samples; default ``min(T // 5, 800)`` (at least 1).

    Returns
    -------
    ndarray, shape (K, T), float64
        ``traces - baseline``.
    """
    tr = np.asarray(traces, dtype=np.float64)
    K, T = tr.shape
    if K == 0 or T == 0:
        return tr.copy()
    win = int(window) if window else max(1, min(T // 5, 800))
    nblk = max(1, int(round(T / win)))
    edges = np.linspace(0, T, nblk + 1).round().astype(int)
    lev = np.stack([np.percentile(tr[:, a:b], percentile, axis=1)
                    for a, b in zip(edges[:-1], edges[1:])], axis=1)      # (K, nblk)
    centres = 0.5 * (edges[:-1] + edges[1:] - 1)
    t = np.arange(T, dtype=np.float64)
    if nblk == 1:
        base = np.repeat(lev, T, axis=1)
    else:
        # linear interpolation between block centres, constant beyond the first/last centre
        j = np.clip(np.searchsorted(centres, t) - 1, 0, nblk - 2)
        w = np.clip((t - centres[j]) / (centres[j + 1] - centres[j]), 0.0, 1.0)
        base = lev[:, j] * (1.0 - w) + lev[:, j + 1] * w
    return tr - base


def mode_robust(x: np.ndarray) -> np.ndarray:
    """Half-sample mode of each row (Bickel & Fruehwirth's robust mode estimator).

    Repeatedly keeps the half of the sorted samples spanning the narrowest range until at most
    three samples remain.

    Parameters
    ----------
    x : ndarray, shape (K, T)

    Returns
    -------
    ndarray, shape (K,), float64
    """
    xs = np.sort(np.asarray(x, dtype=np.float64), axis=1)
    K, n = xs.shape
    if n == 0:
        return np.full(K, np.nan)
    lo = np.zeros(K, dtype=np.int64)
    rows = np.arange(K)[:, None]
    while n > 3:
        h = int(math.ceil(n / 2))
        starts = lo[:, None] + np.arange(n - h + 1)[None, :]
        widths = xs[rows, starts + h - 1] - xs[rows, starts]
        lo = lo + np.argmin(widths, axis=1)
        n = h
    r = np.arange(K)
    if n == 1:
        return xs[r, lo]
    if n == 2:
        return 0.5 * (xs[r, lo] + xs[r, lo + 1])
    a, b, c = xs[r, lo], xs[r, lo + 1], xs[r, lo + 2]
    left, right = b - a, c - b
    return np.where(left < right, 0.5 * (a + b), np.where(left > right, 0.5 * (b + c), b))


def downward_sd(dev: np.ndarray) -> np.ndarray:
    """Noise standard deviation of each row from its downward fluctuations.

    Parameters
    ----------
    dev : ndarray, shape (K, T)
        Deviations from a central value (mode or median); transients only add positive ones.

    Returns
    -------
    ndarray, shape (K,), float64
        RMS of the negative deviations (0 for a row without any).
    """
    below = dev < 0
    return np.sqrt(np.where(below, dev * dev, 0.0).sum(axis=1) / np.maximum(below.sum(axis=1), 1))


def event_exceptionality(traces: np.ndarray, *, N: int, sigma_factor: float = 3.0
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-probability of each trace's most exceptional run of ``N`` high samples.

    Parameters
    ----------
    traces : ndarray, shape (K, T)
        Baseline-removed traces.
    N : int
        Samples per event (``ceil(fr * decay_time)``).
    sigma_factor : float
        Noise scale multiplier used in the z-score (CaImAn: 3).

    Returns
    -------
    fitness : ndarray, shape (K,)
        Minimum over windows of the summed per-sample log tail probabilities (<= 0; more
        negative = more exceptional).
    sd : ndarray, shape (K,)
        Noise standard deviation from the downward fluctuations (trace units).
    mode : ndarray, shape (K,)
        Robust mode (trace units).
    """
    tr = np.nan_to_num(np.asarray(traces, dtype=np.float64))
    K, T = tr.shape
    N = max(1, int(N))
    if K == 0 or T == 0:
        e = np.zeros(K)
        return e, e.copy(), e.copy()
    md = mode_robust(tr)
    d = tr - md[:, None]
    sd = downward_sd(d)
    fallback = tr.std(axis=1)
    sd = np.where(sd > 0, sd, np.where(fallback > 0, fallback, 1.0))
    z = d / (sigma_factor * sd[:, None])
    logp = special.log_ndtr(-z)
    cs = np.concatenate([np.zeros((K, 1)), np.cumsum(logp, axis=1)], axis=1)
    n = min(N, T)
    window_sums = cs[:, n:] - cs[:, :-n]                        # (K, T - n + 1)
    fitness = window_sums.min(axis=1)
    return fitness, sd, md


def fitness_to_snr(fitness: np.ndarray, N: int) -> np.ndarray:
    """Convert event log-probabilities to SNR: ``-Phi^-1(exp(fitness / N))`` (stable in logs).

    Parameters
    ----------
    fitness : ndarray, shape (K,)
        Output of :func:`event_exceptionality`.
    N : int
        Samples per event.

    Returns
    -------
    ndarray, shape (K,), float64
    """
    f = np.minimum(np.asarray(fitness, dtype=np.float64) / max(1, int(N)), 0.0)
    return -special.ndtri_exp(f)


def compute_snr(C: np.ndarray, YrA: np.ndarray | None, *, fr: float, decay_time: float,
                sigma_factor: float = 3.0, baseline_percentile: float = 8.0) -> np.ndarray:
    """SNR of each component's raw trace ``C + YrA`` (CaImAn's ``SNR_comp``).

    Parameters
    ----------
    C : ndarray, shape (K, T)
        Denoised traces.
    YrA : ndarray, shape (K, T), or None
        Residual traces (None: use ``C`` alone).
    fr : float
        Frame rate in Hz.
    decay_time : float
        Transient length in seconds; the event length is ``N = ceil(fr * decay_time)``.
    sigma_factor : float
        Noise multiplier in the z-score (3 as in CaImAn).
    baseline_percentile : float
        Percentile of the running baseline.

    Returns
    -------
    ndarray, shape (K,), float64
        SNR (dimensionless; 0 for a flat trace, larger for more exceptional transients).
    """
    C = np.asarray(C, dtype=np.float64)
    raw = C if YrA is None else C + np.asarray(YrA, dtype=np.float64)
    if raw.ndim != 2:
        raise ValueError(f"traces must be (K, T), got shape {raw.shape}")
    if raw.shape[0] == 0:
        return np.zeros(0)
    N = n_event_samples(fr, decay_time)
    detr = remove_baseline(raw, percentile=baseline_percentile)
    fitness, _, _ = event_exceptionality(detr, N=N, sigma_factor=sigma_factor)
    return fitness_to_snr(fitness, N)
