"""Significance of a component's strongest transient under its own AR model.

A calcium transient starts with a jump that the component's autoregressive model does
not predict from the preceding samples: the *innovation*

    e_t = y_t - g_1 y_{t-1} - ... - g_p y_{t-p}

of the raw trace ``y = C + YrA`` is one large positive value per spike, while slow
fluctuations (background modes leaking into a component at a blood-vessel edge, drifts)
change ``y`` by small steps that are buried in the noise of ``e``. The test asks how
likely noise alone would produce, *anywhere in the recording*, an innovation as large as
the trace's largest one:

* the noise level of ``e`` is the root mean square of its deviations *below* the median
  (spikes only add positive values, so the lower half is noise), and ``z`` is the largest
  deviation above the median in units of it;
* optionally (``max_rise > 1``; the evaluation uses 1, and ``p = 2`` models a slow rise) the
  same is done for the sums of ``m`` consecutive innovations, ``m = 2 .. max_rise``, each
  with its own lower-half noise, and the largest ``z`` is kept;
* the family-wise probability over the ``n * max_rise`` sums tried is
  ``1 - (1 - Phi_c(z))^(n * max_rise)`` (independent Gaussian noise, Bonferroni over the rise
  lengths, which is conservative; ``Phi_c`` the normal tail).

A component whose strongest transient has a family-wise probability above
``max_event_pval`` is rejected by the evaluation (:func:`cellextract.evaluate.select`).
The test is ours; CaImAn's older ``fitness_delta`` (event exceptionality of the first
difference) served the same purpose.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .snr import downward_sd

__all__ = ["innovations", "max_innovation_z", "familywise_pvalue", "event_pvalues"]


def _ar_coefficients(g, K: int) -> np.ndarray:
    """AR coefficients as a (K, p) float array (p >= 1); missing / NaN entries -> 0."""
    if g is None:
        return np.zeros((K, 1))
    rows = [np.atleast_1d(np.asarray(x if x is not None else 0.0, dtype=np.float64)).ravel()
            for x in (g if len(g) == K else [g] * K)]
    p = max(1, max((r.size for r in rows), default=1))
    out = np.zeros((K, p))
    for k, r in enumerate(rows):
        out[k, :r.size] = np.nan_to_num(r, nan=0.0)
    return out


def innovations(traces: np.ndarray, g) -> np.ndarray:
    """Innovations of each trace under its AR(p) model.

    Parameters
    ----------
    traces : ndarray, shape (K, T)
        Raw traces ``C + YrA`` (any units).
    g : sequence of K arrays of shape (p,), or ndarray (K, p), or None
        AR coefficients per component (CaImAn's ``estimates.g``); None or NaN entries mean
        ``g = 0`` (the trace itself is tested).

    Returns
    -------
    ndarray, shape (K, T - p), float64
        ``e_t = y_t - sum_i g_i y_{t-i}`` for ``t = p .. T-1``.
    """
    y = np.asarray(traces, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"traces must be (K, T), got shape {y.shape}")
    K, T = y.shape
    G = _ar_coefficients(g, K)
    p = G.shape[1]
    if T <= p:
        return np.zeros((K, 0))
    e = y[:, p:].copy()
    for i in range(p):
        e -= G[:, i:i + 1] * y[:, p - 1 - i:T - 1 - i]
    return e


def _lower_half_z(x: np.ndarray) -> np.ndarray:
    """``max(x - median) / sigma`` per row, ``sigma`` the RMS of the negative deviations."""
    dev = x - np.median(x, axis=1, keepdims=True)
    sigma = downward_sd(dev)
    top = dev.max(axis=1)
    return np.where(sigma > 0, top / np.where(sigma > 0, sigma, 1.0), 0.0)


def max_innovation_z(e: np.ndarray, *, max_rise: int = 1) -> np.ndarray:
    """Largest sum of up to ``max_rise`` consecutive innovations of each row, in units of noise.

    Parameters
    ----------
    e : ndarray, shape (K, n)
        Innovations.
    max_rise : int
        Longest rise tried, samples (>= 1).

    Returns
    -------
    ndarray, shape (K,), float64
        ``max over m of max_t (S_m - median S_m) / sigma_m`` where ``S_m`` are the sums of
        ``m`` consecutive innovations and ``sigma_m`` the RMS of their negative deviations
        (measured per ``m``: the innovations of a noisy trace are correlated, so the noise of
        a sum is not ``sqrt(m)`` times theirs); 0 for constant rows (no noise, no event).
    """
    e = np.asarray(e, dtype=np.float64)
    if e.shape[1] == 0:
        return np.zeros(e.shape[0])
    z = _lower_half_z(e)
    csum = np.concatenate([np.zeros((e.shape[0], 1)), np.cumsum(e, axis=1)], axis=1)
    for m in range(2, min(int(max_rise), e.shape[1]) + 1):
        z = np.maximum(z, _lower_half_z(csum[:, m:] - csum[:, :-m]))
    return z


def familywise_pvalue(z: np.ndarray, n: int) -> np.ndarray:
    """Probability that the maximum of ``n`` independent standard normals reaches ``z``.

    Parameters
    ----------
    z : ndarray, shape (K,)
    n : int
        Number of samples searched.

    Returns
    -------
    ndarray, shape (K,), float64, in [0, 1]
        ``1 - (1 - Phi_c(z))^n``, computed in logs (exact for tiny tails).
    """
    z = np.asarray(z, dtype=np.float64)
    tail = special.ndtr(-z)
    return -np.expm1(max(int(n), 1) * np.log1p(-np.minimum(tail, 1.0 - 1e-16)))


def event_pvalues(C: np.ndarray, YrA: np.ndarray | None, g, *, max_rise: int = 1) -> np.ndarray:
    """Family-wise probability of each component's strongest transient under noise alone.

    Parameters
    ----------
    C : ndarray, shape (K, T)
        Denoised traces.
    YrA : ndarray, shape (K, T), or None
        Residual traces (None: ``C`` alone).
    g : see :func:`innovations`
    max_rise : int
        Longest rise tried, samples. Default 1: the jump of a transient is what the AR model
        does not predict, and a rise spread over frames is what ``p = 2`` models (CaImAn's
        advice for slow-rising indicators and high frame rates); longer sums of innovations
        also let slow drifts through more easily.

    Returns
    -------
    ndarray, shape (K,), float64
        Small for components with at least one clear calcium transient; close to 1 for
        traces with no jump above the noise (slow drifts, flat traces).
    """
    C = np.asarray(C, dtype=np.float64)
    y = C if YrA is None else C + np.asarray(YrA, dtype=np.float64)
    if y.shape[0] == 0:
        return np.zeros(0)
    e = innovations(y, g)
    m = max(1, min(int(max_rise), e.shape[1]))
    return familywise_pvalue(max_innovation_z(e, max_rise=m), e.shape[1] * m)
