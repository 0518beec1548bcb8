"""Patch tiling of the field of view, per-patch processing and combination.

Tiling (CaImAn's meaning of the parameters): ``rf`` is the patch half-size, so patches
are ``2 * rf`` pixels wide, and ``stride`` is the overlap in pixels between neighbouring
patches (step ``2 * rf - stride``); the last patch of a row/column is aligned with the
edge of the field of view; ``rf = None`` (or a FOV no larger than one patch) gives a
single patch. ``border_pix`` pixels at each edge are left out of every patch.

Each patch has a *core*: the part of the patch closer to its centre than to any
neighbour's (overlaps split in the middle). With ``del_duplicates`` a component is
kept only from the patch whose core holds its centre of mass, then remaining duplicates
(footprint cosine similarity above a threshold) are removed; otherwise components are
combined with a merge pass.

Reading: the memmap ``Yr`` is (P, T) C order with Fortran pixel order, so the pixels of
a patch are one contiguous run of ``h`` rows per image column; workers get a lazy
:class:`~cellextract.cnmf.patch_movie.PatchReader` and read what they need.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.background import downsample_operator
from cellextract.cnmf.merge import merge_components
from cellextract.cnmf.noise import noise_psd
from cellextract.cnmf.spatial import centers_of_mass
from cellextract.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Patch:
    """One tile. ``rows``/``cols`` are half-open ranges in full-FOV pixels."""

    index: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    core_rows: tuple[int, int]
    core_cols: tuple[int, int]

    @property
    def dims(self) -> tuple[int, int]:
        return (self.rows[1] - self.rows[0], self.cols[1] - self.cols[0])


def _axis_tiles(lo: int, hi: int, rf: int | None, stride: int):
    n = hi - lo
    if rf is None or 2 * rf >= n:
        return [(lo, hi)], [(lo, hi)]
    width = 2 * int(rf)
    step = max(1, width - int(stride))
    starts = list(range(lo, hi - width + 1, step))
    if starts[-1] + width < hi:
        starts.append(hi - width)
    spans = [(s, s + width) for s in starts]
    cores = []
    for i, (s, e) in enumerate(spans):
        c0 = lo if i == 0 else (s + spans[i - 1][1]) // 2
        c1 = hi if i == len(spans) - 1 else (spans[i + 1][0] + e) // 2
        cores.append((c0, c1))
    return spans, cores


def patch_grid(dims: tuple[int, int], *, rf: int | None, stride: int,
               border_pix: int = 0) -> list[Patch]:
    """Tile the field of view.

    Parameters
    ----------
    dims : (int, int)
        ``(H, W)``.
    rf : int or None
        Patch half-size in pixels (None: one patch).
    stride : int
        Overlap between neighbouring patches in pixels.
    border_pix : int
        Pixels excluded at each edge.

    Returns
    -------
    list of Patch
        Row-major order (by row range, then column range); cores tile the inner FOV.
    """
    H, W = int(dims[0]), int(dims[1])
    b = int(border_pix)
    if H - 2 * b <= 0 or W - 2 * b <= 0:
        raise ValueError(f"border_pix={b} leaves no pixels in a {H}x{W} field of view")
    rs, rc = _axis_tiles(b, H - b, rf, stride)
    cs, cc = _axis_tiles(b, W - b, rf, stride)
    out = []
    for i, (r, rcore) in enumerate(zip(rs, rc)):
        for j, (c, ccore) in enumerate(zip(cs, cc)):
            out.append(Patch(len(out), r, c, rcore, ccore))
    return out


def read_patch_rows(Yr, dims: tuple[int, int], patch: Patch) -> np.ndarray:
    """Patch data in memmap layout, shape (h*w, T), float32, Fortran order of the patch."""
    H = int(dims[0])
    (r0, r1), (c0, c1) = patch.rows, patch.cols
    blocks = [np.asarray(Yr[r0 + c * H:r1 + c * H], dtype=np.float32) for c in range(c0, c1)]
    return np.concatenate(blocks, axis=0)


def rows_to_frames(Yp: np.ndarray, pdims: tuple[int, int]) -> np.ndarray:
    """(h*w, T) Fortran-pixel-order rows to frames (T, h, w) float32."""
    h, w = pdims
    T = Yp.shape[1]
    return np.ascontiguousarray(Yp.reshape(w, h, T).transpose(2, 1, 0), dtype=np.float32)


def local_to_full(A_loc: sp.spmatrix, patch: Patch, dims: tuple[int, int]) -> sp.csc_matrix:
    """Map footprints (h*w, K) of a patch to full-FOV pixels (H*W, K)."""
    A_loc = sp.coo_matrix(A_loc)
    h = patch.dims[0]
    rr = A_loc.row % h + patch.rows[0]
    cc = A_loc.row // h + patch.cols[0]
    rows = rr + cc * int(dims[0])
    return sp.csc_matrix((A_loc.data.astype(np.float32), (rows, A_loc.col)),
                         shape=(int(dims[0]) * int(dims[1]), A_loc.shape[1]))


def patch_reader(src, dims: tuple[int, int], patch: Patch):
    """A :class:`~cellextract.cnmf.patch_movie.PatchReader` of one patch of ``src``
    (memmap path, read with plain file reads, or an in-memory (P, T) array)."""
    from cellextract.cnmf.patch_movie import PatchReader
    if isinstance(src, (str, os.PathLike)):
        from cellextract.io.memmap import _parse, open_memmap
        _, T, order = _parse(src)
        if order != "C":                               # pixel traces not contiguous
            src = open_memmap(src)[0]
        return PatchReader(src, dims, patch.rows, patch.cols, T=T)
    return PatchReader(src, dims, patch.rows, patch.cols, pilot_frames=None)


def _worker(args):
    """Run ``func(reader, pdims, **kwargs)`` on one patch (``reader`` a
    :class:`~cellextract.cnmf.patch_movie.PatchReader`); returns (index, result, seconds)."""
    src, dims, patch, func, kwargs = args
    t0 = time.perf_counter()
    res = func(patch_reader(src, dims, patch), patch.dims, **kwargs)
    return patch.index, res, time.perf_counter() - t0


def _release_memory() -> None:
    """Give freed heap pages back to the OS (glibc), so an idle worker stays small."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):                # not glibc
        pass


def _pool_worker(args):
    """:func:`_worker` with one BLAS/OpenCV thread (the pool already uses the cores)."""
    from cellextract.motion.threads import single_threaded
    try:
        with single_threaded():
            return _worker(args)
    finally:
        _release_memory()


@contextlib.contextmanager
def patch_pool(src, n_processes: int, n_patches: int):
    """Worker pool for :func:`map_patches` (None when the work runs in this process).

    Create it once, before the main process holds large arrays: workers are forked, so
    they start as copies of this process (counted again in their resident memory).
    """
    if n_processes > 1 and n_patches > 1 and isinstance(src, (str, os.PathLike)):
        with mp.get_context("fork").Pool(min(n_processes, n_patches)) as pool:
            yield pool
    else:
        yield None


def map_patches(src, dims: tuple[int, int], patches: list[Patch], func, *, n_processes: int = 1,
                per_patch=None, pool=None, **kwargs) -> list:
    """Apply ``func(reader, pdims, **kwargs)`` to every patch.

    ``reader`` is a :class:`~cellextract.cnmf.patch_movie.PatchReader` of the patch (read
    column by column, or whole with ``reader.read_all()`` -> (h*w, T)).

    Parameters
    ----------
    src : str or array
        Memmap path (each worker reads only its patch) or an in-memory ``(P, T)`` array
        (processed in this process).
    n_processes : int
        Worker processes (``fork`` pool) when ``src`` is a path and no ``pool`` is given.
    per_patch : list of dict or of callables returning a dict, optional
        Extra keyword arguments for each patch (same order as ``patches``); callables are
        called when their patch is sent, so only a few patches' arguments exist at once.
    pool : multiprocessing.Pool, optional
        From :func:`patch_pool` (reused across calls).

    Returns
    -------
    list
        ``func`` results in patch order (deterministic).
    """
    def jobs():
        for i, p in enumerate(patches):
            extra = {} if per_patch is None else per_patch[i]
            extra = extra() if callable(extra) else extra
            yield (src, dims, p, func, dict(kwargs, **extra))

    out = [None] * len(patches)
    t0 = time.perf_counter()
    n = len(patches)
    total = [0]
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(patch_pool(src, n_processes, n))
        it = (pool.imap_unordered(_pool_worker, jobs()) if pool is not None
              else map(_worker, jobs()))
        for i, (idx, res, _) in enumerate(it):
            out[idx] = res
            _report(i + 1, n, res, t0, total)
    return out


def _report(i, n, res, t0, total):
    k = getattr(res, "K", None)
    if k is None and isinstance(res, tuple) and res and hasattr(res[0], "shape"):
        k = res[0].shape[1]
    total[0] += 0 if k is None else int(k)
    log.info("patch %d/%d done (%s components, %d so far), elapsed %.1f s", i, n,
             "?" if k is None else k, total[0], time.perf_counter() - t0)


def in_core(centers: np.ndarray, patch: Patch) -> np.ndarray:
    """Whether centres ``(row, col)`` (full-FOV pixels, shape (K, 2)) lie in the core."""
    r = np.floor(centers[:, 0] + 0.5)
    c = np.floor(centers[:, 1] + 0.5)
    return ((r >= patch.core_rows[0]) & (r < patch.core_rows[1])
            & (c >= patch.core_cols[0]) & (c < patch.core_cols[1]))


def remove_duplicates(A: sp.spmatrix, C: np.ndarray, *, thr: float = 0.6,
                      corr_thr: float | None = None, same_thr: float = 0.85):
    """Drop components whose footprint duplicates an earlier, brighter one.

    Parameters
    ----------
    A : sparse, shape (P, K)
    C : ndarray, shape (K, T)
    thr : float
        Cosine similarity of the footprints above which two components are duplicates.
    corr_thr : float, optional
        If set, a pair with footprint cosine in ``(thr, same_thr]`` is a duplicate only if
        its traces also correlate above ``corr_thr``: two cells whose somata overlap in
        the image (centres a soma radius apart, cosine ~0.5-0.8) are told apart by their
        independent activity, while the same cell found twice has the same trace. Pairs
        above ``same_thr`` (footprints too alike to be separated) are duplicates
        whatever their traces.
    same_thr : float
        See ``corr_thr``.

    Returns
    -------
    keep : ndarray of int
        Indices kept (sorted).
    """
    A = sp.csc_matrix(A, dtype=np.float32)
    K = A.shape[1]
    if K < 2:
        return np.arange(K)
    nrm = np.sqrt(np.asarray(A.multiply(A).sum(axis=0)).ravel())
    nrm[nrm == 0] = 1
    An = A @ sp.diags(1.0 / nrm)
    S = (An.T @ An).tocoo()
    energy = nrm * np.linalg.norm(C, axis=1)
    order = np.argsort(-energy, kind="stable")
    rank = np.empty(K, int)
    rank[order] = np.arange(K)
    drop = np.zeros(K, bool)
    pairs = [(i, j) for i, j, v in zip(S.row, S.col, S.data) if i != j and v > thr]
    if corr_thr is not None and pairs:
        from cellextract.cnmf.merge import trace_correlation
        cor = trace_correlation(C)
        cos = dict(((i, j), v) for i, j, v in zip(S.row, S.col, S.data))
        pairs = [(i, j) for i, j in pairs if cos[(i, j)] > same_thr or cor[i, j] > corr_thr]
    pairs.sort(key=lambda ij: (min(rank[ij[0]], rank[ij[1]]), max(rank[ij[0]], rank[ij[1]])))
    for i, j in pairs:
        hi, lo = (i, j) if rank[i] < rank[j] else (j, i)
        if not drop[hi]:
            drop[lo] = True
    return np.flatnonzero(~drop)


def combine_patches(parts: list, patches: list[Patch], dims: tuple[int, int], *,
                    del_duplicates: bool, merge_thr: float, dup_thr: float = 0.6,
                    dup_corr: float | None = None):
    """Combine per-patch footprints and traces into full-FOV components.

    Parameters
    ----------
    parts : list of (A_loc (h*w, K_p) sparse, C (K_p, T))
        Per-patch results in patch order.
    patches : list of Patch
    dims : (int, int)
    del_duplicates : bool
        Core rule + duplicate removal (True) or a merge pass with ``merge_thr`` (False).
    dup_thr, dup_corr : float, float or None
        :func:`remove_duplicates` ``thr`` and ``corr_thr``.

    Returns
    -------
    A : csc_matrix, shape (P, K)
    C : ndarray, shape (K, T), float32
    """
    As, Cs = [], []
    T = None
    for (A_loc, C), patch in zip(parts, patches):
        C = np.asarray(C, np.float32)
        T = C.shape[1] if T is None else T
        if A_loc.shape[1] == 0:
            continue
        A_full = local_to_full(A_loc, patch, dims)
        if del_duplicates and len(patches) > 1:
            keep = in_core(centers_of_mass(A_full, dims), patch)
            A_full, C = A_full[:, keep], C[keep]
        As.append(A_full)
        Cs.append(C)
    P = int(dims[0]) * int(dims[1])
    if not As:
        return sp.csc_matrix((P, 0), dtype=np.float32), np.zeros((0, T or 0), np.float32)
    A = sp.hstack(As, format="csc").astype(np.float32)
    C = np.vstack(Cs).astype(np.float32)
    if len(patches) == 1:
        return A, C
    if del_duplicates:
        keep = remove_duplicates(A, C, thr=dup_thr, corr_thr=dup_corr)
        return sp.csc_matrix(A[:, keep]), C[keep]
    A, C, _ = merge_components(A, C, merge_thr=merge_thr, cos_thr=0.85)
    return A, C


# ----------------------------------------------------------------------------- streaming the memmap

class RowSource:
    """Pixel rows of a ``(P, T)`` float32 C-order memmap file or array.

    File reads (not a mapping), so streamed passes do not grow the resident set.
    """

    def __init__(self, src, P: int, T: int):
        self.src, self.P, self.T = src, int(P), int(T)
        self.is_path = isinstance(src, (str, os.PathLike))

    def blocks(self, block_bytes: int):
        """Yield ``(r0, r1, Y[r0:r1])`` blocks of float32 rows."""
        n = max(1, int(block_bytes) // (4 * self.T))
        if self.is_path:
            with open(self.src, "rb") as fh:
                for r0 in range(0, self.P, n):
                    r1 = min(self.P, r0 + n)
                    fh.seek(r0 * self.T * 4)
                    Y = np.fromfile(fh, np.float32, (r1 - r0) * self.T).reshape(r1 - r0, self.T)
                    yield r0, r1, Y
        else:
            for r0 in range(0, self.P, n):
                r1 = min(self.P, r0 + n)
                yield r0, r1, np.asarray(self.src[r0:r1], dtype=np.float32)


def bin_time(X: np.ndarray, tbin: int) -> np.ndarray:
    """Average ``tbin`` consecutive frames along the last axis (remainder dropped), float32."""
    if tbin <= 1:
        return np.asarray(X, np.float32)
    Tb = X.shape[-1] // tbin
    return X[..., :Tb * tbin].reshape(*X.shape[:-1], Tb, tbin).mean(-1, dtype=np.float32)


def stats_pass(rows: RowSource, dims, *, ssub_B: int, tbin: int, need_ds: bool, block_bytes: int,
               noise_range, noise_method):
    """One pass: temporal mean (P,), pixel noise sn (P,), and ``D Y`` binned (P_ds, T_b)."""
    mean = np.zeros(rows.P, np.float32)
    sn = np.zeros(rows.P, np.float32)
    D = downsample_operator(dims, ssub_B).tocsc() if need_ds else None
    Yds = np.zeros((D.shape[0], rows.T // tbin), np.float32) if need_ds else None
    for r0, r1, Y in rows.blocks(block_bytes):
        mean[r0:r1] = Y.mean(1)
        step = max(1, (16 << 20) // (4 * min(rows.T, 3072)))   # bound FFT temporaries
        for i0 in range(0, r1 - r0, step):
            i1 = min(r1 - r0, i0 + step)
            sn[r0 + i0:r0 + i1] = noise_psd(Y[i0:i1], noise_range=noise_range,
                                            noise_method=noise_method)
        if need_ds:
            Ds = D[:, r0:r1]
            lo, hi = Ds.indices.min(), Ds.indices.max() + 1
            Yds[lo:hi] += Ds[lo:hi] @ bin_time(Y, tbin)
    return mean, sn, Yds
