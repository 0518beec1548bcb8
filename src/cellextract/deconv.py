"""Spike deconvolution of calcium traces with OASIS (Friedrich et al., PLoS CB 2017).

Uses the ``oasis-deconv`` package (``oasis.functions.deconvolve``), which solves the
noise-constrained problem ``min |s|_1  s.t.  |c + b - y|^2 <= sn^2 T,  s = G c >= 0``
for an AR(p) calcium model, with the baseline ``b`` optimised too.

``p = 0`` means *no deconvolution*: the baseline ``b`` is the median of the trace
(clipped at 0 when ``bas_nonneg``), ``c = max(y - b, 0)`` and ``s`` is the positive
part of the first difference of ``c`` (``s_0 = c_0``), a crude event signal.
"""

from __future__ import annotations

import warnings

import numpy as np

from cellextract.cnmf.noise import noise_psd
from cellextract.errors import ParameterError

_METHODS = ("oasis",)


def _check(p: int, method: str) -> None:
    if p not in (0, 1, 2):
        raise ParameterError(f"temporal.p must be 0, 1 or 2, got {p}")
    if method not in _METHODS:
        raise ParameterError(f"method_deconvolution must be 'oasis', got {method!r}")


def deconvolve_trace(y: np.ndarray, *, p: int, g=None, sn: float | None = None,
                     bas_nonneg: bool = False, optimize_g: int = 0, penalty: int = 1,
                     method_deconvolution: str = "oasis"):
    """Deconvolve one fluorescence trace.

    Parameters
    ----------
    y : ndarray, shape (T,)
        Raw trace (with baseline).
    p : {0, 1, 2}
        AR order; 0 = no deconvolution (see module docstring).
    g : sequence of float, shape (p,), or None
        AR coefficients; None estimates them from the data (OASIS autocovariance).
    sn : float or None
        Noise standard deviation; None estimates it from the power spectrum.
    bas_nonneg : bool
        Constrain the baseline to be >= 0 (else any value).
    optimize_g : int
        Number of large isolated events used to refine ``g`` (0 = keep ``g``).
    penalty : {0, 1}
        L0 or L1 sparsity penalty.
    method_deconvolution : {'oasis'}

    Returns
    -------
    c : ndarray, shape (T,), float32
        Denoised calcium (baseline removed).
    s : ndarray, shape (T,), float32
        Deconvolved activity (>= 0).
    b : float
        Baseline.
    g : ndarray, shape (p,)
        AR coefficients used.
    lam : float
        Sparsity penalty (Lagrange multiplier) found by OASIS; 0 for ``p = 0``.
    """
    _check(p, method_deconvolution)
    y = np.asarray(y, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("trace contains non-finite values")
    if p == 0:
        b = float(np.median(y))
        if bas_nonneg:
            b = max(b, 0.0)
        c = np.maximum(y - b, 0.0)
        s = np.maximum(np.diff(c, prepend=0.0), 0.0)
        return c.astype(np.float32), s.astype(np.float32), b, np.zeros(0), 0.0
    if sn is None:
        sn = float(noise_psd(y))
    sn = max(float(sn), 1e-9)
    gt = (None,) * p if g is None else tuple(float(v) for v in np.ravel(g)[:p])
    from oasis.functions import deconvolve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = deconvolve(y, g=gt, sn=sn, b_nonneg=bool(bas_nonneg),
                         optimize_g=int(optimize_g), penalty=int(penalty))
    c, s, b, gg, lam = res[0], res[1], res[2], res[3], res[4]
    c = np.maximum(np.asarray(c), 0.0)
    gg = np.asarray(gg, dtype=float).ravel()[:p]
    return (c.astype(np.float32), np.maximum(np.asarray(s), 0).astype(np.float32),
            float(b), gg, float(lam))


def deconvolve_batch(Y: np.ndarray, *, p: int, g=None, sn=None, bas_nonneg: bool = False,
                     optimize_g: int = 0, penalty: int = 1,
                     method_deconvolution: str = "oasis"):
    """Deconvolve ``K`` traces independently (see :func:`deconvolve_trace`).

    Parameters
    ----------
    Y : ndarray, shape (K, T)
    g : None, shape (p,) (shared) or shape (K, p) (per trace)
    sn : None, float or shape (K,)

    Returns
    -------
    C, S : ndarray, shape (K, T), float32
    bl : ndarray, shape (K,)
    G : ndarray, shape (K, p)
    lam : ndarray, shape (K,)
    """
    Y = np.atleast_2d(np.asarray(Y))
    K, T = Y.shape
    if sn is None:
        sn = noise_psd(Y) if T >= 8 else np.full(K, 1e-3, np.float32)
    sn = np.broadcast_to(np.asarray(sn, dtype=float), (K,))
    if g is not None:
        g = np.asarray(g, dtype=float)
        g = np.broadcast_to(g.reshape(-1, g.shape[-1]) if g.size else g.reshape(1, 0), (K, p))
    C = np.zeros((K, T), np.float32)
    S = np.zeros((K, T), np.float32)
    bl = np.zeros(K)
    G = np.zeros((K, p))
    lam = np.zeros(K)
    for k in range(K):
        C[k], S[k], bl[k], gk, lam[k] = deconvolve_trace(
            Y[k], p=p, g=None if g is None else g[k], sn=sn[k], bas_nonneg=bas_nonneg,
            optimize_g=optimize_g, penalty=penalty, method_deconvolution=method_deconvolution)
        G[k, :gk.size] = gk
    return C, S, bl, G, lam
