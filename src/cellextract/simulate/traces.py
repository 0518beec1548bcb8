"""Neuron activity for the simulator: Poisson spikes and AR(1)/AR(2) calcium.

Model (per neuron ``k``, frame ``t``)::

    C[k, t] = g1 * C[k, t-1] + g2 * C[k, t-2] + S[k, t]      (AR(2); g2 = 0 for AR(1))

``S`` is the innovation (non-negative, spike count times a per-spike amplitude
scaled so that a single spike gives a calcium transient whose *peak* equals the
neuron's amplitude). Spikes are drawn from an inhomogeneous Poisson process whose
rate is the neuron's base rate times a slow population modulation; a subset of
neurons also fires bursts.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

__all__ = ["ar_coefficients", "impulse_peak", "ou_process", "spike_counts",
           "calcium_from_innovation", "neuron_activity"]


def ar_coefficients(decay_time: float, fr: float, *, rise_time: float = 0.0,
                    order: int = 2) -> np.ndarray:
    """AR coefficients of a double-exponential calcium kernel.

    Parameters
    ----------
    decay_time, rise_time : float
        Time constants in seconds (``rise_time`` is used only when ``order == 2``).
    fr : float
        Frame rate in Hz.
    order : int
        1 or 2.

    Returns
    -------
    g : ndarray, shape (order,)
        ``g1`` (and ``g2``) such that ``c_t = g1 c_{t-1} + g2 c_{t-2} + s_t``.
    """
    d = float(np.exp(-1.0 / (decay_time * fr)))
    if order == 1:
        return np.array([d])
    r = float(np.exp(-1.0 / (rise_time * fr))) if rise_time > 0 else 0.0
    return np.array([d + r, -d * r])


def impulse_peak(g: np.ndarray, *, n: int = 400) -> float:
    """Peak of the AR impulse response (1 for AR(1), >= 1 for AR(2))."""
    x = np.zeros(n)
    x[0] = 1.0
    return float(lfilter([1.0], np.r_[1.0, -np.asarray(g, float)], x).max())


def ou_process(rng: np.random.Generator, n: int, T: int, *, tau_frames) -> np.ndarray:
    """Unit-variance Ornstein-Uhlenbeck (AR(1)) processes.

    Parameters
    ----------
    n, T : int
        Number of processes and of frames.
    tau_frames : float or array of shape (n,)
        Correlation time of each process in frames.

    Returns
    -------
    x : ndarray, shape (n, T), float64, stationary with unit variance.
    """
    tau = np.broadcast_to(np.asarray(tau_frames, float), (n,))
    out = np.empty((n, T))
    eps = rng.standard_normal((n, T))
    for i in range(n):
        a = float(np.exp(-1.0 / max(tau[i], 1e-6)))
        e = eps[i] * np.sqrt(1.0 - a * a)
        e[0] = eps[i, 0]
        out[i] = lfilter([1.0], [1.0, -a], e)
    return out


def spike_counts(rng: np.random.Generator, rates: np.ndarray, T: int, fr: float, *,
                 burst_frac: float = 0.3, coupling: np.ndarray | None = None,
                 modulation_sd: float = 0.6) -> np.ndarray:
    """Spike counts per frame from modulated Poisson processes with bursts.

    Parameters
    ----------
    rates : ndarray, shape (K,)
        Mean firing rate of each neuron in Hz.
    T : int
        Number of frames.
    fr : float
        Frame rate in Hz.
    burst_frac : float
        Fraction of neurons that also fire bursts (2-8 extra spikes within ~0.2 s).
    coupling : ndarray, shape (K,), optional
        Weight in [0, 1] of the shared slow population modulation for each neuron.
    modulation_sd : float
        Standard deviation of the log-rate modulation.

    Returns
    -------
    counts : ndarray, shape (K, T), float32 (integer valued).
    """
    K = len(rates)
    if coupling is None:
        coupling = rng.uniform(0.0, 1.0, K)
    shared = ou_process(rng, 1, T, tau_frames=5.0 * fr)[0]
    taus = rng.uniform(2.0, 20.0, K) * fr
    counts = np.empty((K, T), np.float32)
    for k in range(K):     # one neuron at a time: memory O(T), not O(K T)
        own = ou_process(rng, 1, T, tau_frames=taus[k])[0]
        logm = modulation_sd * (coupling[k] * shared + np.sqrt(1.0 - coupling[k] ** 2) * own)
        counts[k] = rng.poisson(rates[k] / fr * np.exp(logm - 0.5 * modulation_sd ** 2))
    bursty = rng.random(K) < burst_frac
    for k in np.flatnonzero(bursty):
        n_b = rng.poisson(T / fr * rng.uniform(0.01, 0.05))
        starts = rng.integers(0, T, n_b)
        width = max(1, int(round(0.2 * fr)))
        for t0 in starts:
            n_sp = 2 + rng.poisson(2.5)
            ts = np.minimum(t0 + rng.integers(0, width, n_sp), T - 1)
            np.add.at(counts[k], ts, 1.0)
    return counts


def calcium_from_innovation(S: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Calcium traces from innovations through each neuron's AR filter.

    Parameters
    ----------
    S : ndarray, shape (K, T)
    g : ndarray, shape (K, p)

    Returns
    -------
    C : ndarray, shape (K, T), float32.
    """
    C = np.empty(S.shape, np.float32)
    for k in range(S.shape[0]):
        C[k] = lfilter([1.0], np.r_[1.0, -g[k]], S[k].astype(np.float64))
    return C


def neuron_activity(rng: np.random.Generator, K: int, T: int, fr: float, *,
                    decay_time: float, rise_time: float = 0.06, ar_order: int = 2,
                    amp_median: float = 1.0, amp_sigma: float = 0.5,
                    rate_range=(0.05, 2.0), burst_frac: float = 0.3) -> dict:
    """Draw spikes, AR coefficients, amplitudes and calcium for ``K`` neurons.

    Parameters
    ----------
    K, T : int
        Neurons and frames.
    fr : float
        Frame rate in Hz.
    decay_time, rise_time : float
        Median time constants in seconds (each neuron varies by ~15 %).
    ar_order : int
        1 or 2.
    amp_median, amp_sigma : float
        Per-neuron single-spike peak amplitude: log-normal(log(amp_median), amp_sigma).
    rate_range : pair of float
        Firing rates are log-uniform in this range (Hz).
    burst_frac : float
        Fraction of neurons with bursts.

    Returns
    -------
    dict with ``C, S`` (K, T) float32, ``counts`` (K, T) float32, ``g`` (K, p),
    ``amplitude`` (K,), ``rates`` (K,), ``decay`` (K,) seconds.
    """
    lo, hi = rate_range
    rates = np.exp(rng.uniform(np.log(lo), np.log(hi), K))
    counts = spike_counts(rng, rates, T, fr, burst_frac=burst_frac)
    decay = decay_time * np.exp(rng.normal(0.0, 0.15, K))
    rise = rise_time * np.exp(rng.normal(0.0, 0.15, K))
    g = np.stack([ar_coefficients(decay[k], fr, rise_time=rise[k], order=ar_order)
                  for k in range(K)]) if K else np.zeros((0, ar_order))
    peaks = np.array([impulse_peak(gk) for gk in g])
    amp = amp_median * np.exp(rng.normal(0.0, amp_sigma, K))
    per_spike = np.exp(rng.normal(0.0, 0.2, counts.shape)).astype(np.float32)
    S = (counts * per_spike * (amp / np.maximum(peaks, 1e-9))[:, None].astype(np.float32))
    S = S.astype(np.float32)
    C = calcium_from_innovation(S, g)
    return {"C": C, "S": S, "counts": counts, "g": g, "amplitude": amp,
            "rates": rates, "decay": decay}
