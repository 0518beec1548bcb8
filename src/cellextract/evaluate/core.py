"""``evaluate_components``: fill the Estimates' quality metrics and the accept/reject split."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.estimates import Estimates
from cellextract.errors import ParameterError
from cellextract.log import get_logger

from .events import event_pvalues
from .rvalues import background_mode, compute_r_values
from .select import select_components
from .snr import compute_snr, n_event_samples

__all__ = ["evaluate_components", "evaluate_with_params"]

log = get_logger(__name__)


def _check(fr: float, decay_time: float) -> None:
    if not (np.isfinite(fr) and fr > 0):
        raise ParameterError(f"data.fr must be a positive number of Hz, got {fr!r}")
    if not (np.isfinite(decay_time) and decay_time > 0):
        raise ParameterError(f"data.decay_time must be a positive number of seconds, got {decay_time!r}")


def evaluate_components(est: Estimates, Yr, *, fr: float, decay_time: float, min_SNR: float,
                        SNR_lowest: float, rval_thr: float, rval_lowest: float, use_cnn: bool,
                        min_cnn_thr: float, cnn_lowest: float, gSig, gSig_range=None,
                        max_event_pval: float | None = None, n_processes: int = 1,
                        block_mb: float = 64.0) -> Estimates:
    """Compute SNR, r-values and (optionally) CNN scores, then apply CaImAn's acceptance rule.

    Parameters
    ----------
    est : Estimates
        Model after CNMF (``A`` (H*W, K), ``C`` and ``YrA`` (K, T), background fields optional).
    Yr : array-like, shape (H*W, T)
        The motion-corrected movie (memmap, Fortran pixel order); only read.
    fr : float
        Frame rate, Hz.
    decay_time : float
        Transient length, s; events span ``N = ceil(fr * decay_time)`` frames.
    min_SNR, SNR_lowest, rval_thr, rval_lowest, min_cnn_thr, cnn_lowest : float
        Thresholds of :func:`cellextract.evaluate.select.select_components`.
    use_cnn : bool
        Score footprints with the CNN classifier and use the scores in the rule.
    gSig : int or pair of int
        Neuron radius in pixels (crop scale for the CNN).
    gSig_range : sequence of int (or pairs) or None
        Neuron sizes to try with the CNN; each component keeps its best score. None: ``[gSig]``.
    max_event_pval : float or None
        Reject components whose strongest transient has a family-wise probability under noise
        alone above this (:mod:`cellextract.evaluate.events`); None: no such test.
    n_processes : int
        Threads used to stream the memmap.
    block_mb : float
        Size of each memmap read in MB.

    Returns
    -------
    Estimates
        A copy of ``est`` with ``SNR_comp`` (K,), ``r_values`` (K,) (NaN where undefined),
        ``cnn_preds`` (K,) and ``idx_components`` / ``idx_components_bad`` (sorted int64);
        ``extra['event_pval']`` (K,) holds the transient test's probabilities.
        When ``use_cnn`` is False the CNN is not run and ``cnn_preds`` is all NaN (K,).
        With zero components every array is empty.
    """
    _check(float(fr), float(decay_time))
    K = est.n_components
    t0 = time.perf_counter()
    if K == 0:
        log.warning("evaluation: no components to evaluate; writing an empty selection")
        e = np.zeros(0)
        return replace(est, SNR_comp=e, r_values=e.copy(), cnn_preds=e.copy(),
                       idx_components=np.zeros(0, dtype=np.int64),
                       idx_components_bad=np.zeros(0, dtype=np.int64))
    N = n_event_samples(fr, decay_time)
    snr = compute_snr(est.C, est.YrA, fr=fr, decay_time=decay_time)
    ev = event_pvalues(est.C, est.YrA, est.g)
    log.info("evaluation: SNR of %d components (N=%d samples per event) in %.1f s; "
             "%d without a transient above the noise (event p > %s)", K, N,
             time.perf_counter() - t0,
             int((ev > max_event_pval).sum()) if max_event_pval is not None else 0, max_event_pval)
    t1 = time.perf_counter()
    mode = background_mode(b=est.b, f=est.f, b0=est.b0, W=est.W)
    r = compute_r_values(Yr, sp.csc_matrix(est.A), est.C, N=N, b=est.b, f=est.f, b0=est.b0,
                         W=est.W, dims=est.dims, ssub_B=(est.extra or {}).get("ssub_B"),
                         block_mb=block_mb, n_threads=n_processes)
    log.info("evaluation: r-values (background: %s) in %.1f s", mode, time.perf_counter() - t1)
    if use_cnn:
        from .cnn import predict_components
        t2 = time.perf_counter()
        cnn = predict_components(est.A, est.dims, gSig=gSig, gSig_range=gSig_range)
        log.info("evaluation: CNN scores in %.1f s", time.perf_counter() - t2)
    else:
        cnn = np.full(K, np.nan)
    good, bad = select_components(snr, r, cnn, min_SNR=min_SNR, SNR_lowest=SNR_lowest,
                                  rval_thr=rval_thr, rval_lowest=rval_lowest, use_cnn=use_cnn,
                                  min_cnn_thr=min_cnn_thr, cnn_lowest=cnn_lowest,
                                  event_pval=ev, max_event_pval=max_event_pval)
    if good.size == 0:
        log.warning("evaluation: all %d components were rejected (min_SNR=%s, rval_thr=%s%s); "
                    "the accepted set is empty", K, min_SNR, rval_thr,
                    f", min_cnn_thr={min_cnn_thr}" if use_cnn else "")
    else:
        log.info("evaluation: accepted %d of %d components, rejected %d (%.1f s)",
                 good.size, K, bad.size, time.perf_counter() - t0)
    extra = dict(est.extra or {}, event_pval=ev)
    return replace(est, SNR_comp=snr, r_values=r, cnn_preds=cnn,
                   idx_components=good, idx_components_bad=bad, extra=extra)


def evaluate_with_params(est: Estimates, Yr, params, *, n_processes: int = 1, use_cnn: bool | None = None) -> Estimates:
    """:func:`evaluate_components` with the thresholds of a resolved parameter set.

    Parameters
    ----------
    est : Estimates
        Fitted model.
    Yr : np.ndarray
        ``(H*W, T)`` movie in memmap layout.
    params : cellextract.params.Params
        Resolved parameters (``data``, ``init``, ``quality`` groups are read).
    n_processes : int
        Worker processes.
    use_cnn : bool, optional
        Overrides ``params.quality.use_cnn``.

    Returns
    -------
    Estimates
        With the evaluation fields set.
    """
    q = params.quality
    return evaluate_components(est, Yr, fr=params.data.fr, decay_time=params.data.decay_time,
                               min_SNR=q.min_SNR, SNR_lowest=q.SNR_lowest, rval_thr=q.rval_thr,
                               rval_lowest=q.rval_lowest, use_cnn=q.use_cnn if use_cnn is None else use_cnn,
                               min_cnn_thr=q.min_cnn_thr, cnn_lowest=q.cnn_lowest,
                               gSig=params.init.gSig, gSig_range=q.gSig_range,
                               max_event_pval=q.max_event_pval, n_processes=n_processes)
