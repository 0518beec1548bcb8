"""Result of a CNMF initialisation (shared by corr_pnr, greedy_roi and sparse_nmf)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["InitResult", "footprint_centers", "empty_result"]


@dataclass
class InitResult:
    """Initial spatial and temporal components.

    Attributes
    ----------
    A : scipy.sparse.csc_matrix, shape (h*w, K)
        Spatial footprints, Fortran pixel order (pixel ``i = row + col * h``), float32.
        Columns are **L2-normalised** (unit norm), as in :class:`Estimates`.
    C : ndarray, shape (K, T), float32
        Temporal traces at full temporal resolution (linearly interpolated when the
        initialisation ran with ``tsub > 1``), scaled so that ``A @ C`` approximates the
        neural part of the (baseline-removed) raw data in raw intensity units.
    centers : ndarray, shape (K, 2), float
        Centre of mass ``(row, col)`` of each footprint, pixels.
    cn : ndarray, shape (h, w), float32
        Correlation image used for the search (zeros when the method does not use one).
    pnr : ndarray, shape (h, w), float32
        Peak-to-noise image (zeros when the method does not use one).
    dims : (int, int)
        ``(h, w)``.
    b : ndarray, shape (h*w, m), or None
        Background footprints when the method estimates them, Fortran pixel order
        (greedy_roi: ``nb + 1`` non-negative terms, the first constant with ``f[0] == 1``,
        so ``A @ C + b @ f`` models the raw data; sparse_nmf: the ``nb`` global terms,
        any sign, on top of ``b0``).
    f : ndarray, shape (m, T), or None
        Background traces matching ``b``.
    b0 : ndarray, shape (h*w,), or None
        Per-pixel baseline (median over time) that was removed before initialisation.
    extra : dict
        Method-specific diagnostics (e.g. seed positions, timing).
    """

    A: sp.csc_matrix
    C: np.ndarray
    centers: np.ndarray
    cn: np.ndarray
    pnr: np.ndarray
    dims: tuple[int, int]
    b: np.ndarray | None = None
    f: np.ndarray | None = None
    b0: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def K(self) -> int:
        """Number of components."""
        return int(self.A.shape[1])

    def footprints_2d(self) -> np.ndarray:
        """Footprints as images, shape (K, h, w), float32."""
        h, w = self.dims
        dense = np.asarray(self.A.toarray(), dtype=np.float32)
        return dense.T.reshape(-1, w, h).transpose(0, 2, 1)


def footprint_centers(A: sp.spmatrix, dims: tuple[int, int]) -> np.ndarray:
    """Centre of mass ``(row, col)`` of every column of ``A`` (Fortran pixel order).

    Returns
    -------
    ndarray, shape (K, 2), float64
        NaN for empty columns.
    """
    h, w = dims
    A = sp.csc_matrix(A)
    idx = np.arange(h * w)
    rows = (idx % h).astype(np.float64)
    cols = (idx // h).astype(np.float64)
    s = np.asarray(A.sum(axis=0)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        cr = np.asarray(A.T @ rows).ravel() / s
        cc = np.asarray(A.T @ cols).ravel() / s
    return np.stack([cr, cc], axis=1)


def empty_result(dims: tuple[int, int], T: int, cn=None, pnr=None, **kw) -> InitResult:
    """An :class:`InitResult` with no components (K = 0)."""
    h, w = dims
    z = np.zeros((h, w), np.float32)
    return InitResult(A=sp.csc_matrix((h * w, 0), dtype=np.float32),
                      C=np.zeros((0, T), np.float32), centers=np.zeros((0, 2)),
                      cn=z if cn is None else cn, pnr=z if pnr is None else pnr,
                      dims=(int(h), int(w)), **kw)
