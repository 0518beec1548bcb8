"""Background models: CNMF-E ring model (1P, ``nb = 0``) and low-rank NMF (``nb > 0``).

Ring model (Zhou et al., eLife 2018). The fluctuating background of each pixel is a
weighted sum of the background at the pixels on a ring around it. With ``B`` the
background and ``X = Y - A C - b0`` (``b0`` the temporal mean of ``Y - A C``)::

    B = b0 1^T + U W D X

where ``D`` (``P_ds x P``) averages ``ssub_B x ssub_B`` pixel blocks, ``W``
(``P_ds x P_ds``, sparse, row ``i`` non-zero only on the ring of ``i``) holds the
weights fitted by least squares over time on the downsampled grid, and ``U``
(``P x P_ds``) replicates a downsampled pixel back onto its block. As in CaImAn, ``W``
is stored on the ``ssub_B`` grid (``Estimates.W`` shape ``(P_ds, P_ds)``) and ``b0``
at full resolution; ``ssub_B = 1`` gives ``W`` of shape ``(P, P)``.

Ring radius (CaImAn's definition): with ``g = 2 * (gSiz // 2) + 1`` the ring radius is
``ring_size_factor * g`` full-resolution pixels, i.e. ``round(ring_size_factor * g /
ssub_B)`` on the downsampled grid; the ring holds the pixels at distance ``d`` with
``radius <= d < radius + 1``.

All pixel vectors are in Fortran order of the ``(H, W)`` image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def ds_dims(dims: tuple[int, int], ssub: int) -> tuple[int, int]:
    """Size ``(ceil(H/ssub), ceil(W/ssub))`` of the downsampled grid."""
    return (-(-int(dims[0]) // ssub), -(-int(dims[1]) // ssub))


def downsample_operator(dims: tuple[int, int], ssub: int) -> sp.csr_matrix:
    """Block-averaging operator ``D``, shape (P_ds, P), Fortran pixel order on both sides.

    Partial blocks at the right/bottom edges average the pixels they contain.
    """
    H, W = int(dims[0]), int(dims[1])
    Hd, Wd = ds_dims(dims, ssub)
    rr, cc = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    src = (rr + cc * H).ravel()
    dst = (rr // ssub + (cc // ssub) * Hd).ravel()
    counts = np.bincount(dst, minlength=Hd * Wd).astype(np.float32)
    D = sp.csr_matrix((1.0 / counts[dst], (dst, src)), shape=(Hd * Wd, H * W), dtype=np.float32)
    return D


def upsample_operator(dims: tuple[int, int], ssub: int) -> sp.csr_matrix:
    """Replication operator ``U``, shape (P, P_ds): each pixel takes its block's value."""
    D = downsample_operator(dims, ssub)
    U = (D.T > 0).astype(np.float32)
    return sp.csr_matrix(U)


def ring_radius(*, gSiz: int, ring_size_factor: float, ssub_B: int = 1) -> int:
    """Ring radius in downsampled pixels (see module docstring)."""
    g = 2 * (int(gSiz) // 2) + 1
    return max(1, int(round(ring_size_factor * g / float(ssub_B))))


def ring_offsets(radius: int) -> np.ndarray:
    """Integer offsets ``(dy, dx)`` of the ring pixels, shape (n_ring, 2)."""
    r = int(radius)
    yy, xx = np.mgrid[-r - 1:r + 2, -r - 1:r + 2]
    d = np.sqrt(yy ** 2 + xx ** 2)
    sel = (d >= r) & (d < r + 1)
    return np.stack([yy[sel], xx[sel]], axis=1)


def ring_indices(dims: tuple[int, int], radius: int) -> np.ndarray:
    """Fortran indices of each pixel's ring pixels, shape (P, n_ring); -1 = outside."""
    H, W = int(dims[0]), int(dims[1])
    off = ring_offsets(radius)
    rr, cc = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    rr = rr.ravel(order="F")[:, None] + off[None, :, 0]
    cc = cc.ravel(order="F")[:, None] + off[None, :, 1]
    inside = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
    idx = rr + cc * H
    idx[~inside] = -1
    return idx.astype(np.int64)


def _gram(Xh: np.ndarray) -> np.ndarray:
    """``Xh Xh^T`` (m, m) padded with a zero last row/column, float32."""
    m = Xh.shape[0]
    G = np.zeros((m + 1, m + 1), np.float32)
    G[:m, :m] = Xh @ Xh.T
    return G


def fit_ring_weights(X: np.ndarray, dims: tuple[int, int], radius: int, *,
                     ridge: float = 1e-4, tile: int = 24) -> sp.csr_matrix:
    """Least-squares ring weights ``W`` such that ``X ~= W X``.

    The grid is cut into ``tile x tile`` blocks; for each block one Gram matrix of the
    block plus a halo of ``radius + 1`` pixels is computed with a single matrix product
    (BLAS), and each pixel's normal equations are gathered from it and solved in batch.

    Parameters
    ----------
    X : ndarray, shape (P, T)
        Fluctuating background samples (zero-mean in time), Fortran pixel order, on the
        grid ``dims``.
    dims : (int, int)
        Grid size of ``X``.
    radius : int
        Ring radius in pixels of this grid.
    ridge : float
        Tikhonov term relative to the mean diagonal of each Gram matrix (stabilises
        collinear rings and border pixels).
    tile : int
        Block size in pixels.

    Returns
    -------
    W : scipy.sparse.csr_matrix, shape (P, P), float32
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    P, T = X.shape
    H, W = int(dims[0]), int(dims[1])
    idx = ring_indices(dims, radius)
    n = idx.shape[1]
    halo = int(radius) + 1
    data = np.zeros((P, n), np.float32)
    eye = np.eye(n, dtype=np.float32)
    local = np.full(P, -1, np.int64)
    for y0 in range(0, H, tile):
        for x0 in range(0, W, tile):
            ys = np.arange(max(0, y0 - halo), min(H, y0 + tile + halo))
            xs = np.arange(max(0, x0 - halo), min(W, x0 + tile + halo))
            hidx = (ys[:, None] + xs[None, :] * H).ravel()
            m = hidx.size
            local[hidx] = np.arange(m)
            G = _gram(X[hidx])
            ty = np.arange(y0, min(H, y0 + tile))
            tx = np.arange(x0, min(W, x0 + tile))
            pix = (ty[:, None] + tx[None, :] * H).ravel()
            ri = idx[pix]
            li = np.where(ri < 0, m, local[np.maximum(ri, 0)])
            Gf = G.ravel()
            Gi = np.take(Gf, li[:, :, None] * (m + 1) + li[:, None, :])
            rhs = np.take(Gf, li * (m + 1) + local[pix][:, None])
            lam = ridge * np.maximum(np.trace(Gi, axis1=1, axis2=2) / n, 1e-12)
            Gi += lam[:, None, None] * eye
            data[pix] = np.linalg.solve(Gi, rhs[..., None])[..., 0]
            local[hidx] = -1
    data[idx < 0] = 0.0
    rows = np.repeat(np.arange(P), n)
    keep = (idx.ravel() >= 0)
    Wm = sp.csr_matrix((data.ravel()[keep], (rows[keep], idx.ravel()[keep])), shape=(P, P),
                       dtype=np.float32)
    return Wm


@dataclass(frozen=True)
class RingModel:
    """Ring-model background ``B = b0 1^T + U W D (Y - A C - b0 1^T)``.

    Attributes
    ----------
    W : csr_matrix, shape (P_ds, P_ds)
    b0 : ndarray, shape (P,), float32
    D : csr_matrix, shape (P_ds, P)
    U : csr_matrix, shape (P, P_ds)
    dims : (int, int)
        Full-resolution ``(H, W)``.
    ssub_B : int
    radius : int
        Ring radius on the downsampled grid.
    """

    W: sp.csr_matrix
    b0: np.ndarray
    D: sp.csr_matrix
    U: sp.csr_matrix
    dims: tuple[int, int]
    ssub_B: int
    radius: int

    def apply(self, X):
        """``U W D X`` for ``X`` of shape (P, n) (dense or sparse)."""
        return self.U @ (self.W @ (self.D @ X))

    def apply_T(self, X):
        """``(U W D)^T X = D^T W^T U^T X`` for ``X`` of shape (P, n)."""
        return self.D.T @ (self.W.T @ (self.U.T @ X))

    def background(self, R: np.ndarray) -> np.ndarray:
        """Background ``b0 + U W D (R - b0)`` for residual frames ``R = Y - A C``, (P, n)."""
        return self.b0[:, None] + self.apply(R - self.b0[:, None])


def fit_ring_model(Yds: np.ndarray, A: sp.spmatrix, Cds: np.ndarray, *, mean_Y: np.ndarray,
                   mean_C: np.ndarray, dims: tuple[int, int], gSiz: int,
                   ring_size_factor: float, ssub_B: int, ridge: float = 1e-4) -> RingModel:
    """Fit the ring model from downsampled data.

    Parameters
    ----------
    Yds : ndarray, shape (P_ds, T_b)
        ``D Y`` (spatially block-averaged, optionally temporally binned) data.
    A : sparse, shape (P, K)
        Footprints (full resolution).
    Cds : ndarray, shape (K, T_b)
        Traces binned in time like ``Yds``.
    mean_Y : ndarray, shape (P,)
        Temporal mean of ``Y`` at full resolution.
    mean_C : ndarray, shape (K,)
        Temporal mean of ``C``.
    dims : (int, int)
    gSiz : int
    ring_size_factor : float
    ssub_B : int

    Returns
    -------
    RingModel
    """
    D = downsample_operator(dims, ssub_B)
    U = upsample_operator(dims, ssub_B)
    b0 = (np.asarray(mean_Y, np.float32) - np.asarray(A @ mean_C).ravel()).astype(np.float32)
    X = np.asarray(Yds, np.float32) - np.asarray((D @ A) @ Cds, np.float32)
    X -= X.mean(axis=1, keepdims=True)
    radius = ring_radius(gSiz=gSiz, ring_size_factor=ring_size_factor, ssub_B=ssub_B)
    W = fit_ring_weights(X, ds_dims(dims, ssub_B), radius, ridge=ridge)
    return RingModel(W=W, b0=b0, D=D, U=U, dims=(int(dims[0]), int(dims[1])),
                     ssub_B=int(ssub_B), radius=radius)


# ----------------------------------------------------------------------------- low rank

def hals_b(b: np.ndarray, RfT: np.ndarray, ffT: np.ndarray, *, n_iter: int = 3) -> np.ndarray:
    """HALS update of spatial background ``b`` (P, nb) given ``R f^T`` (P, nb), ``f f^T``.

    ``R = Y - A C`` is the residual; ``b >= 0``.
    """
    b = np.array(b, dtype=np.float32)
    for _ in range(n_iter):
        for j in range(b.shape[1]):
            d = max(float(ffT[j, j]), 1e-12)
            b[:, j] = np.maximum(b[:, j] + (RfT[:, j] - b @ ffT[:, j]) / d, 0)
    return b


def hals_f(f: np.ndarray, bTR: np.ndarray, bTb: np.ndarray, *, n_iter: int = 3) -> np.ndarray:
    """HALS update of temporal background ``f`` (nb, T) given ``b^T R`` (nb, T), ``b^T b``."""
    f = np.array(f, dtype=np.float32)
    for _ in range(n_iter):
        for j in range(f.shape[0]):
            d = max(float(bTb[j, j]), 1e-12)
            f[j] = np.maximum(f[j] + (bTR[j] - bTb[j] @ f) / d, 0)
    return f


def init_lowrank(mean_R: np.ndarray, T: int, nb: int, *, seed: int = 0):
    """Starting point for the low-rank background.

    Parameters
    ----------
    mean_R : ndarray, shape (P,)
        Temporal mean of the residual ``Y - A C``.
    T, nb : int

    Returns
    -------
    b : ndarray, shape (P, nb)
        ``mean_R`` (clipped >= 0), the other columns slightly perturbed copies.
    f : ndarray, shape (nb, T)
        Ones (first row), the others slightly perturbed.
    """
    rng = np.random.default_rng(seed)
    m = np.maximum(np.asarray(mean_R, np.float32), 0)
    b = np.repeat(m[:, None], nb, axis=1) / nb
    f = np.ones((nb, T), np.float32)
    if nb > 1:
        b *= rng.uniform(0.5, 1.5, b.shape).astype(np.float32)
        f *= rng.uniform(0.5, 1.5, f.shape).astype(np.float32)
    return b, f
