"""Spatial consistency (``r_values``): does the movie look like the footprint when the cell fires?

For component ``k`` (Giovannucci et al. 2019, "spatial footprint consistency"):

1. **Active frames** ``F_k``: windows ``[p - N // 2, p + N]`` around the ``n_peaks`` highest peaks of
   its denoised trace ``C[k]`` (peaks below ``peak_frac`` of the highest are ignored), with
   ``N = ceil(fr * decay_time)``.
2. **Exclusive frames**: frames in which any overlapping component (``A[:, j] . A[:, k] > 0``) is
   active are removed from ``F_k``; if nothing is left, ``F_k`` is kept whole.
3. **Active change image** ``d_k = mean_{t in F_k} Y[:, t] - mean_t Y[:, t]``: the movie during
   the transients minus its temporal mean (so static structure, and any constant part of a
   component's trace, cannot masquerade as activity), on the support ``S_k = {A[:, k] > 0}``.
4. **Background change** over the same frames, subtracted from ``d_k``, by what the Estimates carry:

   - ring model (``W``, ``b0``; 1P / CNMF-E, background ``B = b0 + U W D (Y - A C - b0)``):
     ``U W D (d - A dC)`` with ``dC = mean_F C - mean_t C``, where ``D`` averages
     ``ssub_B x ssub_B`` pixel blocks and ``U`` replicates them back (``W`` lives on the
     ``ssub_B`` grid; identity operators when ``ssub_B = 1``); ``b0`` cancels. This needs ``d`` on
     the pixels of the ring blocks too;
   - low-rank (``b``, ``f`` with ``nb > 0``): ``b[S_k] @ (mean_F f - mean_t f)``;
   - neither: nothing more (the temporal mean already removed the static background).
5. **Neighbours** (``subtract_neighbours=True``, our addition to CaImAn's definition): the model
   change of the overlapping components, ``sum_j A[S_k, j] dC[j]``, is subtracted too, so a
   neighbour that cannot be avoided in time does not blur the image.
6. ``r_k = Pearson(A[S_k, k], d_k - background - neighbours)``; NaN when undefined (fewer than 3
   pixels, no activity or a constant image).

CaImAn correlates the footprint with ``mean_F Y - b mean_F f``; using changes relative to the
temporal mean is our choice (it rejects components whose trace is mostly a constant offset on a
static bright structure).

The memmap ``Yr`` (H*W, T) is read once, in blocks of contiguous pixel rows restricted to the
pixels some component needs, so memory stays bounded by ``block_mb``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from scipy.signal import find_peaks

from cellextract.log import Progress, get_logger

__all__ = ["active_frames", "exclusive_frames", "compute_r_values", "background_mode"]

log = get_logger(__name__)


def active_frames(C: np.ndarray, *, N: int, n_peaks: int = 10, peak_frac: float = 0.3
                  ) -> list[np.ndarray]:
    """Frames of each component's strongest transients.

    Parameters
    ----------
    C : ndarray, shape (K, T)
        Denoised traces.
    N : int
        Event length in frames (``ceil(fr * decay_time)``); the window around a peak ``p`` is
        ``[p - N // 2, p + N]``.
    n_peaks : int
        Maximum number of transients used.
    peak_frac : float
        Peaks lower than this fraction of the highest peak (above the trace median) are ignored.

    Returns
    -------
    list of ndarray of int64
        ``K`` sorted arrays of frame indices (empty for a trace without any positive peak).
    """
    C = np.asarray(C, dtype=np.float64)
    K, T = C.shape
    out: list[np.ndarray] = []
    before, after = max(1, N // 2), max(1, N)
    for k in range(K):
        c = np.nan_to_num(C[k] - np.median(C[k]))
        pk, _ = find_peaks(np.concatenate([[-np.inf], c, [-np.inf]]))
        pk = pk - 1
        if pk.size == 0 or c[pk].max() <= 0:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        h = c[pk]
        keep = pk[h >= peak_frac * h.max()]
        keep = keep[np.argsort(c[keep])[::-1][:n_peaks]]
        fr = (keep[:, None] + np.arange(-before, after + 1)[None, :]).ravel()
        out.append(np.unique(fr[(fr >= 0) & (fr < T)]).astype(np.int64))
    return out


def exclusive_frames(frames: list[np.ndarray], A: sp.spmatrix) -> list[np.ndarray]:
    """Remove from each component's frames those where an overlapping component is active.

    Parameters
    ----------
    frames : list of K int arrays
        Output of :func:`active_frames`.
    A : sparse matrix, shape (H*W, K)
        Footprints (non-negative).

    Returns
    -------
    list of ndarray of int64
        ``K`` arrays; a component whose frames would all be removed keeps all of them.
    """
    A = sp.csc_matrix(A)
    ov = sp.csr_matrix((A.T @ A) > 0)
    out = []
    for k in range(len(frames)):
        nb = ov.indices[ov.indptr[k]:ov.indptr[k + 1]]
        nb = nb[nb != k]
        fk = frames[k]
        if nb.size and fk.size:
            busy = np.concatenate([frames[j] for j in nb])
            kept = np.setdiff1d(fk, busy, assume_unique=False)
            fk = kept if kept.size else fk
        out.append(fk)
    return out


def background_mode(*, b=None, f=None, b0=None, W=None) -> str:
    """Which background is subtracted: ``"ring"``, ``"lowrank"`` or ``"mean"`` (see module doc)."""
    if W is not None and b0 is not None:
        return "ring"
    if b is not None and f is not None and np.size(b) > 0 and np.asarray(b).ndim == 2 \
            and np.asarray(b).shape[1] > 0:
        return "lowrank"
    return "mean"


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3:
        return float("nan")
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else float("nan")


class _Ring:
    """Ring-model operators: ``W`` (P_ds, P_ds) on the ``ssub`` grid, block map and ``D``."""

    def __init__(self, W: sp.spmatrix, b0: np.ndarray, dims: tuple[int, int] | None,
                 ssub: int | None, P: int):
        self.W = sp.csr_matrix(W)
        self.b0 = np.asarray(b0, dtype=np.float64).ravel()
        Pds = self.W.shape[0]
        if ssub is None:
            ssub = 1 if Pds == P else None
            if ssub is None and dims is not None:
                ssub = next((s for s in range(2, 17) if _ds_size(dims, s) == Pds), None)
            if ssub is None:
                raise ValueError(f"ring model W of shape {self.W.shape} does not match "
                                 f"{P} pixels (ssub_B unknown)")
        self.ssub = int(ssub)
        if self.ssub == 1:
            self.blk = np.arange(P)
            self.D = sp.identity(P, format="csr")
        else:
            H, Wd = int(dims[0]), int(dims[1])
            Hd = -(-H // self.ssub)
            p = np.arange(P)
            self.blk = (p % H) // self.ssub + ((p // H) // self.ssub) * Hd
            cnt = np.bincount(self.blk, minlength=Pds).astype(np.float64)
            self.D = sp.csr_matrix((1.0 / cnt[self.blk], (self.blk, p)), shape=(Pds, P))
        if self.W.shape != (Pds, Pds) or Pds != self.D.shape[0]:
            raise ValueError(f"ring model W of shape {self.W.shape} does not match ssub_B="
                             f"{self.ssub} on {P} pixels")

    def parts(self, sup: np.ndarray):
        """Blocks of the support, their ring blocks and all full-resolution pixels involved."""
        bs = np.unique(self.blk[sup])
        ring = np.unique(self.W[bs].indices)
        mask = np.zeros(self.D.shape[1], bool)
        mask[self.D[ring].indices] = True
        mask[sup] = True
        return bs, ring, np.flatnonzero(mask)

    def fluctuation(self, sup: np.ndarray, parts, x: np.ndarray) -> np.ndarray:
        """``U W D x`` on ``sup``, given ``x`` on the pixels of ``parts = self.parts(sup)``."""
        bs, ring, pix = parts
        xds = self.D[ring][:, pix] @ x                           # ring blocks, downsampled
        bds = self.W[bs][:, ring] @ xds                          # support blocks
        return bds[np.searchsorted(bs, self.blk[sup])]


def _ds_size(dims, s):
    return (-(-int(dims[0]) // s)) * (-(-int(dims[1]) // s))


def _support(A: sp.csc_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    s0, s1 = A.indptr[k], A.indptr[k + 1]
    pos = A.data[s0:s1] > 0
    sup = A.indices[s0:s1][pos].astype(np.int64)
    a = A.data[s0:s1][pos].astype(np.float64)
    order = np.argsort(sup)
    return sup[order], a[order]


def _needed_pixels(A: sp.csc_matrix, ring: _Ring | None) -> tuple[list[np.ndarray], list]:
    """Per component, the sorted pixels whose means are needed (and the ring parts, if any)."""
    need, parts = [], []
    for k in range(A.shape[1]):
        sup, _ = _support(A, k)
        if ring is not None and sup.size:
            pk = ring.parts(sup)
            parts.append(pk)
            need.append(pk[2])
        else:
            parts.append(None)
            need.append(sup)
    return need, parts


def _stream_means(Yr: np.ndarray, need: list[np.ndarray], frames: list[np.ndarray], *,
                  block_mb: float, n_threads: int, want_full_mean: bool
                  ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Mean over ``frames[k]`` (and optionally over all frames) of ``Yr`` rows ``need[k]``.

    One pass over the union of needed rows in contiguous blocks of about ``block_mb`` MB.
    """
    K = len(need)
    T = Yr.shape[1]
    means = [np.zeros(n.size) for n in need]
    fulls = [np.zeros(n.size) for n in need] if want_full_mean else None
    union = np.unique(np.concatenate(need)) if K else np.zeros(0, dtype=np.int64)
    if union.size == 0:
        return means, fulls
    lo = np.array([n[0] if n.size else np.iinfo(np.int64).max for n in need])
    hi = np.array([n[-1] if n.size else -1 for n in need])
    rows_per_block = max(1, int(block_mb * 2**20 // (4 * T)))
    # blocks: consecutive needed rows, at most rows_per_block rows of the file per read
    bounds = []
    i = 0
    while i < union.size:
        j = np.searchsorted(union, union[i] + rows_per_block, side="left")
        bounds.append((i, int(j)))
        i = int(j)

    def work(bd):
        i0, i1 = bd
        p0, p1 = int(union[i0]), int(union[i1 - 1]) + 1
        block = Yr[p0:p1]                # contiguous rows (n, T); a view, read in place
        bmean = block.mean(axis=1, dtype=np.float64) if want_full_mean else None
        res = []
        for k in np.nonzero((lo < p1) & (hi >= p0))[0]:
            a, b = np.searchsorted(need[k], [p0, p1])
            if b <= a:
                continue
            loc = need[k][a:b] - p0
            fm = (block[np.ix_(loc, frames[k])].mean(axis=1, dtype=np.float64)
                  if frames[k].size else np.zeros(b - a))
            res.append((k, a, b, fm, bmean[loc] if want_full_mean else None))
        return res

    prog = Progress(len(bounds), "pixel blocks", log, every=10.0)
    with ThreadPoolExecutor(max_workers=max(1, int(n_threads))) as ex:
        for res in ex.map(work, bounds):
            for k, a, b, fm, am in res:
                means[k][a:b] = fm
                if want_full_mean:
                    fulls[k][a:b] = am
            prog.update(1)
    return means, fulls


def compute_r_values(Yr: np.ndarray, A: sp.spmatrix, C: np.ndarray, *, N: int,
                     b: np.ndarray | None = None, f: np.ndarray | None = None,
                     b0: np.ndarray | None = None, W: sp.spmatrix | None = None,
                     dims: tuple[int, int] | None = None, ssub_B: int | None = None,
                     n_peaks: int = 10, peak_frac: float = 0.3, subtract_neighbours: bool = True,
                     block_mb: float = 64.0, n_threads: int = 1) -> np.ndarray:
    """Spatial consistency of every component (see module docstring).

    Parameters
    ----------
    Yr : array-like, shape (H*W, T)
        Movie, Fortran pixel order (usually the float32 C-order memmap).
    A : sparse matrix, shape (H*W, K)
        Footprints.
    C : ndarray, shape (K, T)
        Denoised traces (used to find the active frames and, for the ring model, to remove the
        components from the background estimate).
    N : int
        Event length in frames, ``ceil(fr * decay_time)``.
    b, f, b0, W : optional
        Background model of the Estimates (see :func:`background_mode`); ``W`` is
        (P_ds, P_ds) on the ``ssub_B`` grid.
    dims : (int, int) or None
        ``(H, W)``; needed for a ring model with ``ssub_B > 1``.
    ssub_B : int or None
        Downsampling of the ring model; None infers it from ``W.shape`` and ``dims``.
    n_peaks, peak_frac : int, float
        Transient selection (see :func:`active_frames`).
    subtract_neighbours : bool
        Remove the overlapping components' model contribution (step 5 of the module doc).
    block_mb : float
        Size of each read of the memmap in MB.
    n_threads : int
        Threads reading/averaging blocks concurrently.

    Returns
    -------
    ndarray, shape (K,), float64
        Pearson r in [-1, 1], NaN when undefined.
    """
    A = sp.csc_matrix(A)
    P, K = A.shape
    if K == 0:
        return np.zeros(0)
    if Yr.shape[0] != P:
        raise ValueError(f"Yr has {Yr.shape[0]} pixels but A has {P}")
    C = np.asarray(C)
    mode = background_mode(b=b, f=f, b0=b0, W=W)
    ring = _Ring(W, b0, dims, ssub_B, P) if mode == "ring" else None
    frames = exclusive_frames(active_frames(C, N=N, n_peaks=n_peaks, peak_frac=peak_frac), A)
    need, parts = _needed_pixels(A, ring)
    means, fulls = _stream_means(Yr, need, frames, block_mb=block_mb, n_threads=n_threads,
                                 want_full_mean=True)
    Ar = sp.csr_matrix(A) if ring is not None or subtract_neighbours else None
    ov = sp.csr_matrix(A.T @ A) if subtract_neighbours else None
    Cmean = C.mean(axis=1, dtype=np.float64)
    if mode == "lowrank":
        b = np.asarray(b, dtype=np.float64)
        f = np.asarray(f, dtype=np.float64)
        fmean = f.mean(axis=1)
    r = np.full(K, np.nan)
    for k in range(K):
        sup, a = _support(A, k)
        if frames[k].size == 0 or sup.size == 0:
            continue
        dC = C[:, frames[k]].mean(axis=1, dtype=np.float64) - Cmean          # (K,)
        d = means[k] - fulls[k]                                              # on need[k]
        at = np.searchsorted(need[k], sup)
        img = d[at]
        if mode == "lowrank":
            img = img - b[sup] @ (f[:, frames[k]].mean(axis=1) - fmean)
        elif mode == "ring":
            pix = need[k]
            img = img - ring.fluctuation(sup, parts[k], d - Ar[pix] @ dC)
        if subtract_neighbours:
            nb = ov.indices[ov.indptr[k]:ov.indptr[k + 1]]
            nb = nb[nb != k]
            if nb.size:
                img = img - Ar[sup][:, nb] @ dC[nb]
        r[k] = _pearson(a, img)
    return r
