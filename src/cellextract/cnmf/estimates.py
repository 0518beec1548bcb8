"""The CNMF model's results, named and shaped as CaImAn's ``Estimates``.

Conventions (CaImAn's): ``dims = (H, W)``; pixel index ``i = row + col * H``
(Fortran order); ``K`` components, ``T`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import scipy.sparse as sp


def footprint_images(A, dims: tuple[int, int]) -> np.ndarray:
    """Footprint columns as images.

    Parameters
    ----------
    A : sparse or dense matrix, shape (H*W, K)
        Footprints with pixels in Fortran order.
    dims : tuple of int
        ``(H, W)``.

    Returns
    -------
    ndarray, shape (K, H, W), float32
    """
    H, W = dims
    dense = np.asarray(A.toarray() if sp.issparse(A) else A, dtype=np.float32)
    return dense.T.reshape(-1, W, H).transpose(0, 2, 1)


@dataclass
class Estimates:
    """Results of source extraction (and, after evaluation, of component selection).

    Attributes
    ----------
    A : scipy.sparse.csc_matrix, shape (H*W, K)
        Spatial footprints, columns with unit L2 norm, pixels in Fortran order.
    C : ndarray, shape (K, T), float32
        Denoised calcium traces (in units matching the unit-norm ``A``).
    S : ndarray, shape (K, T), float32
        Deconvolved activity (spike-like, non-negative).
    YrA : ndarray, shape (K, T), float32
        Residual traces; ``C + YrA`` is the raw (unfiltered) trace.
    dims : tuple of int
        ``(H, W)``.
    b, f : ndarray or None
        Global low-rank background: ``b`` shape (H*W, nb), ``f`` shape (nb, T).
    b0 : ndarray or None, shape (H*W,)
        Constant background of the ring model (1P, nb = 0).
    W : scipy.sparse.csr_matrix or None, shape (P_ds, P_ds)
        Ring-model weights on the ``ssub_B``-downsampled pixel grid (CaImAn's convention;
        ``P_ds = ceil(H / ssub_B) * ceil(W / ssub_B)``): the fluctuating background is
        ``W`` applied to the downsampled residual ``Y - A C - b0``, upsampled back.
    sn : ndarray, shape (H*W,)
        Noise standard deviation of each pixel.
    g : ndarray, shape (K, p)
        Autoregressive coefficients of each component.
    bl, c1, neurons_sn, lam : ndarray, shape (K,)
        Baseline, initial calcium value, trace noise level and sparsity penalty.
    idx_components, idx_components_bad : ndarray of int or None
        Accepted / rejected component indices (filled by evaluation).
    SNR_comp, r_values, cnn_preds : ndarray, shape (K,), or None
        Evaluation metrics (filled by evaluation).
    Cn : ndarray or None, shape (H, W)
        Local correlation image.
    """

    A: sp.csc_matrix
    C: np.ndarray
    dims: tuple[int, int]
    S: np.ndarray | None = None
    YrA: np.ndarray | None = None
    b: np.ndarray | None = None
    f: np.ndarray | None = None
    b0: np.ndarray | None = None
    W: sp.csr_matrix | None = None
    sn: np.ndarray | None = None
    g: np.ndarray | None = None
    bl: np.ndarray | None = None
    c1: np.ndarray | None = None
    neurons_sn: np.ndarray | None = None
    lam: np.ndarray | None = None
    idx_components: np.ndarray | None = None
    idx_components_bad: np.ndarray | None = None
    SNR_comp: np.ndarray | None = None
    r_values: np.ndarray | None = None
    cnn_preds: np.ndarray | None = None
    Cn: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return int(self.A.shape[1])

    @property
    def n_frames(self) -> int:
        """Number of frames ``T``."""
        return int(self.C.shape[1])

    def footprints_2d(self) -> np.ndarray:
        """Footprints as images, shape (K, H, W), float32."""
        return footprint_images(self.A, self.dims)

    def select(self, idx) -> "Estimates":
        """Return a copy keeping only components ``idx`` (per-component fields sliced)."""
        idx = np.asarray(idx, dtype=int)
        out = {}
        for fl in fields(self):
            v = getattr(self, fl.name)
            if fl.name == "A":
                v = sp.csc_matrix(v[:, idx])
            elif fl.name in ("C", "S", "YrA", "g", "bl", "c1", "neurons_sn", "lam",
                             "SNR_comp", "r_values", "cnn_preds") and v is not None:
                v = np.asarray(v)[idx]
            elif fl.name in ("idx_components", "idx_components_bad"):
                v = None
            out[fl.name] = v
        return Estimates(**out)
