"""CaImAn's acceptance rule for components from their quality metrics.

A component is **accepted** if any criterion passes its high threshold::

    r >= rval_thr  or  SNR > min_SNR  or  (use_cnn and cnn >= min_cnn_thr)

and is then **rejected** regardless if any metric is at or below its lowest bound::

    r <= rval_lowest  or  SNR <= SNR_lowest  or  (use_cnn and cnn <= cnn_lowest)
    or  event_pval > max_event_pval

(the last test is ours, :mod:`cellextract.evaluate.events`: a trace whose strongest transient
noise alone would produce is not a neuron's, whatever its footprint's r-value).
NaN metrics (undefined, e.g. a flat trace's r-value) satisfy no comparison: they neither
accept nor reject.
"""

from __future__ import annotations

import numpy as np

__all__ = ["select_components"]


def select_components(SNR_comp: np.ndarray, r_values: np.ndarray, cnn_preds: np.ndarray | None = None,
                      *, min_SNR: float, SNR_lowest: float, rval_thr: float, rval_lowest: float,
                      use_cnn: bool = False, min_cnn_thr: float = 0.9, cnn_lowest: float = 0.1,
                      event_pval: np.ndarray | None = None, max_event_pval: float | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Split components into accepted and rejected index arrays.

    Parameters
    ----------
    SNR_comp : ndarray, shape (K,)
        Trace SNR (see :mod:`cellextract.evaluate.snr`).
    r_values : ndarray, shape (K,)
        Spatial consistency (Pearson r, in [-1, 1]).
    cnn_preds : ndarray, shape (K,), or None
        CNN probability of being a neuron, in [0, 1]; required when ``use_cnn``.
    min_SNR, SNR_lowest, rval_thr, rval_lowest, min_cnn_thr, cnn_lowest : float
        Thresholds (CaImAn names).
    use_cnn : bool
        Whether the CNN criterion takes part in the rule.
    event_pval : ndarray, shape (K,), or None
        Family-wise probability of each trace's strongest transient under noise alone
        (:func:`cellextract.evaluate.events.event_pvalues`).
    max_event_pval : float or None
        Components with ``event_pval`` above it are rejected; None: no such test.

    Returns
    -------
    idx_components : ndarray of int64, shape (n_acc,)
        Accepted indices, sorted ascending.
    idx_components_bad : ndarray of int64, shape (K - n_acc,)
        Rejected indices, sorted ascending.
    """
    snr = np.asarray(SNR_comp, dtype=np.float64).ravel()
    r = np.asarray(r_values, dtype=np.float64).ravel()
    K = snr.size
    if r.size != K:
        raise ValueError(f"SNR_comp has {K} values but r_values has {r.size}")
    with np.errstate(invalid="ignore"):
        accept = (r >= rval_thr) | (snr > min_SNR)
        reject = (r <= rval_lowest) | (snr <= SNR_lowest)
        if use_cnn:
            if cnn_preds is None:
                raise ValueError("use_cnn=True needs cnn_preds")
            cnn = np.asarray(cnn_preds, dtype=np.float64).ravel()
            if cnn.size != K:
                raise ValueError(f"cnn_preds has {cnn.size} values, expected {K}")
            accept |= cnn >= min_cnn_thr
            reject |= cnn <= cnn_lowest
        if max_event_pval is not None:
            if event_pval is None:
                raise ValueError("max_event_pval needs event_pval")
            ev = np.asarray(event_pval, dtype=np.float64).ravel()
            if ev.size != K:
                raise ValueError(f"event_pval has {ev.size} values, expected {K}")
            reject |= ev > max_event_pval
    good = accept & ~reject
    idx = np.arange(K, dtype=np.int64)
    return idx[good], idx[~good]
