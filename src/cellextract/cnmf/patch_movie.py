"""Lazy access to one patch of a movie, column by column: raw pixels, time / space
averaging, and the model residual searched by the second initialisation pass.

The memmap ``Yr`` (P, T) stores each pixel's time series contiguously and a patch column
is a run of ``h`` consecutive pixels, so a column of a patch over all frames is one
contiguous read. Nothing here holds a whole patch: callers ask for single columns (the
streamed statistics pass) or for small rectangles (a seed's neighbourhood), each over all
frames; time averaging (``tsub``) is applied as soon as a column is read, so full-rate
data exist for one column at a time.

Readers (same interface: ``shape (h, w)``, ``T``, ``avg_rect``, ``iter_avg_columns``):

* :class:`PatchReader` -- the data, from a memmap file (plain reads, never mapped) or an
  in-memory ``(P, T)`` array.
* :class:`ResidualReader` -- data minus the known neurons minus a ring-model background
  fitted on the patch (CNMF-E's residual, Zhou et al. 2018); every value needs the data
  on the ring around it, so rectangles are read with a halo and the column sweep keeps a
  sliding window of columns.

:class:`AveragedMovie` puts ``ssub x ssub`` pixel averaging on top (the grid on which
corr_pnr searches seeds).
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

__all__ = ["PatchReader", "ResidualReader", "AveragedMovie", "time_average"]


def time_average(X: np.ndarray, tsub: int) -> np.ndarray:
    """Average ``tsub`` consecutive frames along the last axis (a last partial bin is the
    mean of what exists), float32. Same arithmetic as CNMF-E's frame binning used by
    corr_pnr: strided sums in frame order, then one multiplication."""
    X = np.asarray(X, np.float32)
    if tsub <= 1:
        return np.array(X, np.float32)
    T = X.shape[-1]
    n = T // tsub
    out = X[..., 0:n * tsub:tsub].copy()
    for j in range(1, tsub):
        out += X[..., j:n * tsub:tsub]
    out *= np.float32(1.0 / tsub)
    if n * tsub < T:
        out = np.concatenate([out, X[..., n * tsub:].mean(axis=-1, keepdims=True)], axis=-1)
    return out


class PatchReader:
    """Full-resolution pixels of one patch of a ``(P, T)`` movie (Fortran pixel order).

    Parameters
    ----------
    src : str, path or ndarray
        Memmap file (float32, C order, no header) or array of shape (P, T).
    dims : (int, int)
        Field of view ``(H, W)`` of ``src``.
    rows, cols : (int, int), optional
        Patch row / column range (half-open); default the whole field of view.
    T : int, optional
        Number of frames (required for a file).
    pilot_frames : int or None
        Non-finite values (NaN borders of a motion-corrected movie) are replaced by the
        median of the finite values of the patch over its first ``pilot_frames`` frames
        (None: all frames); computed once, on the first non-finite value met.
    """

    def __init__(self, src, dims, rows=None, cols=None, *, T=None, pilot_frames=200):
        self.src = src
        self.is_path = isinstance(src, (str, os.PathLike))
        self.H, self.W = int(dims[0]), int(dims[1])
        self.rows = tuple(rows) if rows is not None else (0, self.H)
        self.cols = tuple(cols) if cols is not None else (0, self.W)
        self.T = int(T if T is not None else np.shape(src)[1])
        self.pilot_frames = pilot_frames
        self._fill = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows[1] - self.rows[0], self.cols[1] - self.cols[0])

    def _raw_column(self, c: int, r0: int, r1: int, t1: int) -> np.ndarray:
        """Frames [0, t1) of patch column c, rows [r0, r1): (r1 - r0, t1) float32."""
        g0 = self.rows[0] + r0 + (self.cols[0] + c) * self.H
        if not self.is_path:
            return np.array(self.src[g0:g0 + r1 - r0, :t1], dtype=np.float32)
        out = np.empty((r1 - r0, self.T), np.float32)
        with open(self.src, "rb", buffering=0) as fh:
            n = os.preadv(fh.fileno(), [out], g0 * self.T * 4)
        if n != out.nbytes:
            raise OSError(f"short read from {self.src}: {n} of {out.nbytes} bytes")
        return out[:, :t1]

    def column(self, c: int, r0: int = 0, r1: int | None = None) -> np.ndarray:
        """Patch column ``c`` (rows ``r0:r1``) over all frames, shape (n, T), float32."""
        r1 = self.shape[0] if r1 is None else r1
        X = self._raw_column(c, r0, r1, self.T)
        if not np.isfinite(X).all():
            X[~np.isfinite(X)] = self.fill_value()
        return X

    def fill_value(self) -> float:
        """Replacement of non-finite values (see class docstring)."""
        if self._fill is None:
            t1 = self.T if self.pilot_frames is None else min(self.T, int(self.pilot_frames))
            vals = [self._raw_column(c, 0, self.shape[0], t1) for c in range(self.shape[1])]
            X = np.concatenate(vals, axis=0)
            fin = X[np.isfinite(X)]
            self._fill = float(np.median(fin)) if fin.size else 0.0
        return self._fill

    def read_all(self) -> np.ndarray:
        """The whole patch (h*w, T), Fortran pixel order (for the in-memory initialisers)."""
        out = np.concatenate([self._raw_column(c, 0, self.shape[0], self.T)
                              for c in range(self.shape[1])], axis=0)
        return out

    def _frames(self, r0, r1, c0, c1, a, b) -> np.ndarray:
        """Frames ``a:b`` of a rectangle, (nc, nr, b - a) float32, non-finite filled."""
        if self.is_path and getattr(self, "_mm", None) is None:
            self._mm = np.memmap(self.src, dtype=np.float32, mode="r",
                                 shape=(self.H * self.W, self.T))
        Yr = self._mm if self.is_path else self.src
        out = np.empty((c1 - c0, r1 - r0, b - a), np.float32)
        for j, c in enumerate(range(c0, c1)):
            g0 = self.rows[0] + r0 + (self.cols[0] + c) * self.H
            out[j] = Yr[g0:g0 + r1 - r0, a:b]
        if not np.isfinite(out).all():
            out[~np.isfinite(out)] = self.fill_value()
        return out

    def avg_rect(self, r0, r1, c0, c1, tsub: int, t0: int = 0, t1: int | None = None):
        """Rows ``r0:r1`` x columns ``c0:c1`` averaged over ``tsub`` frames, averaged frames
        ``t0:t1`` (default all), shape (nc, nr, t1 - t0)."""
        Td = -(-self.T // tsub)
        t1 = Td if t1 is None else t1
        if (t0, t1) == (0, Td):                        # whole columns, one read each
            out = np.empty((c1 - c0, r1 - r0, Td), np.float32)
            for j, c in enumerate(range(c0, c1)):
                out[j] = time_average(self.column(c, r0, r1), tsub)
            return out
        return time_average(self._frames(r0, r1, c0, c1, t0 * tsub, min(t1 * tsub, self.T)),
                            tsub)

    def iter_avg_columns(self, tsub: int):
        """Yield ``(c, column (h, Td))`` for every patch column, in order."""
        for c in range(self.shape[1]):
            yield c, time_average(self.column(c), tsub)


def _block_range(a: int, b: int, s: int, halo: int, n: int) -> tuple[int, int]:
    """Pixel range [a, b) grown by ``halo`` blocks of ``s`` px, aligned to blocks, in [0, n)."""
    return max((a // s - halo) * s, 0), min(((b - 1) // s + halo + 1) * s, n)


class ResidualReader:
    """Residual ``Y - A C - B`` of one patch, ``B`` its ring-model background.

    With ``X = Y - A C - b0``, ``B - b0 = U W D X`` (:class:`RingModel` fitted on the
    patch). A value at pixel p needs ``X`` on the ``ssub_B`` blocks of the ring around p's
    block, hence the halo. Averaging over ``tsub`` frames is done before the (linear)
    model is applied.

    Parameters
    ----------
    reader : PatchReader
    A : sparse, shape (h*w, K)
        Known footprints in the patch (Fortran order of the patch).
    C : ndarray, shape (K, T)
    ring : cellextract.cnmf.background.RingModel
        Fitted on the patch (``dims == reader.shape``).
    """

    def __init__(self, reader, A, C, ring):
        self.reader, self.ring = reader, ring
        self.T = reader.T
        self.A = sp.csr_matrix(A, dtype=np.float32)
        self.C = np.asarray(C, np.float32)
        self.s = int(ring.ssub_B)
        self.halo = int(ring.radius) + 1                       # blocks
        self.D, self.Wr = sp.csr_matrix(ring.D), sp.csr_matrix(ring.W)
        self._Cavg = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.reader.shape

    def _c_avg(self, tsub):
        if tsub not in self._Cavg:
            self._Cavg[tsub] = time_average(self.C, tsub)
        return self._Cavg[tsub]

    def _ds_index(self, rr, cc):
        Hd = -(-self.shape[0] // self.s)
        return rr // self.s + (cc // self.s) * Hd

    def _residual(self, Xw: np.ndarray, wr, wc, out_r, out_c, tsub, t0=0) -> np.ndarray:
        """Residual on rows ``out_r`` x cols ``out_c`` from averaged data ``Xw`` (nc, nr, n)
        (averaged frames ``t0:t0+n``) on the window rows ``wr`` x cols ``wc`` (block
        aligned, covering the halo)."""
        h = self.shape[0]
        nc, nr, Td = Xw.shape
        rr, cc = np.meshgrid(np.arange(*wr), np.arange(*wc), indexing="xy")   # (nc, nr)
        pix = (rr + cc * h).ravel()                     # window pixels, (col, row) order
        X = Xw.reshape(nc * nr, Td) - self.A[pix] @ self._c_avg(tsub)[:, t0:t0 + Td]
        X -= self.ring.b0[pix][:, None]
        ds = np.unique(self._ds_index(rr.ravel(), cc.ravel()))
        DX = self.D[ds][:, pix] @ X                      # blocks lie inside the window
        orr, occ = np.meshgrid(np.arange(*out_r), np.arange(*out_c), indexing="xy")
        ods = self._ds_index(orr.ravel(), occ.ravel())
        uds, inv = np.unique(ods, return_inverse=True)
        WDX = self.Wr[uds][:, ds] @ DX                   # ring neighbours lie inside ds
        loc = ((orr - wr[0]) + (occ - wc[0]) * nr).ravel()
        R = X[loc] - WDX[inv]
        return np.ascontiguousarray(R.reshape(out_c[1] - out_c[0], out_r[1] - out_r[0], Td),
                                    dtype=np.float32)

    def avg_rect(self, r0, r1, c0, c1, tsub: int, t0: int = 0, t1: int | None = None,
                 *, chunk_bytes: float = 16e6) -> np.ndarray:
        """Residual averaged over ``tsub`` frames on a rectangle, averaged frames ``t0:t1``
        (default all), (nc, nr, t1 - t0); computed in chunks of frames (the halo's data
        for one chunk stay below ``chunk_bytes`` at full rate)."""
        h, w = self.shape
        wr = _block_range(r0, r1, self.s, self.halo, h)
        wc = _block_range(c0, c1, self.s, self.halo, w)
        t1 = -(-self.T // tsub) if t1 is None else t1
        step = max(1, int(chunk_bytes // (4 * tsub * (wr[1] - wr[0]) * (wc[1] - wc[0]))))
        out = np.empty((c1 - c0, r1 - r0, t1 - t0), np.float32)
        for a in range(t0, t1, step):
            b = min(t1, a + step)
            Xw = self.reader.avg_rect(wr[0], wr[1], wc[0], wc[1], tsub, a, b)
            out[:, :, a - t0:b - t0] = self._residual(Xw, wr, wc, (r0, r1), (c0, c1), tsub, a)
        return out

    def _x_column(self, c: int, col: np.ndarray, tsub: int) -> np.ndarray:
        """``X = Y - A C - b0`` on patch column c from its averaged data (h, Td)."""
        h = self.shape[0]
        pix = np.arange(h) + c * h
        X = col - self.A[pix] @ self._c_avg(tsub)
        X -= self.ring.b0[pix][:, None]
        return np.asarray(X, np.float32)

    def iter_avg_columns(self, tsub: int):
        """Yield ``(c, residual column (h, Td))`` in order. Each data column is read and
        averaged once; ``X`` is kept for the columns not yet returned and ``D X`` for the
        ``2 * halo + 1`` block columns around the current one."""
        h, w = self.shape
        s, halo = self.s, self.halo
        Hd = -(-h // s)
        nbc = -(-w // s)
        cols = self.reader.iter_avg_columns(tsub)
        X, DX = {}, {}                                   # by column / by block column

        def load_block(b):
            for c in range(b * s, min(b * s + s, w)):
                X[c] = self._x_column(c, next(cols)[1], tsub)
            pix = np.concatenate([np.arange(h) + c * h for c in range(b * s, min(b * s + s, w))])
            DX[b] = self.D[b * Hd + np.arange(Hd)][:, pix] @ np.concatenate(
                [X[c] for c in range(b * s, min(b * s + s, w))])

        for b in range(nbc):
            lo, hi = max(b - halo, 0), min(b + halo + 1, nbc)
            for bb in range(hi):
                if bb not in DX and bb >= lo:
                    load_block(bb)
            for bb in [k for k in DX if k < lo]:
                del DX[bb]
            ds = np.concatenate([bb * Hd + np.arange(Hd) for bb in range(lo, hi)])
            WDX = self.Wr[b * Hd + np.arange(Hd)][:, ds] @ np.concatenate(
                [DX[bb] for bb in range(lo, hi)])
            for c in range(b * s, min(b * s + s, w)):
                yield c, np.ascontiguousarray(X.pop(c) - WDX[np.arange(h) // s])


class AveragedMovie:
    """A patch averaged over ``tsub`` frames and ``ssub x ssub`` pixels.

    Blocks cut by the patch edge are completed by repeating the last row / column (as
    ``np.pad(mode='edge')``). Coordinates of :meth:`rect` are on the averaged grid.
    """

    def __init__(self, reader, *, tsub: int = 1, ssub: int = 1):
        self.reader, self.tsub, self.ssub = reader, max(1, int(tsub)), max(1, int(ssub))
        h, w = reader.shape
        self.full = (h, w)
        self.shape = (-(-h // self.ssub), -(-w // self.ssub))
        self.T = reader.T
        self.Td = -(-self.T // self.tsub)

    def _pool_rows(self, X: np.ndarray, r0: int) -> np.ndarray:
        """(nc, nr_full, Td) -> (nc, nr_ds, Td): row blocks starting at full row r0*ssub."""
        s, h = self.ssub, self.full[0]
        n = X.shape[1]
        nb = -(-n // s)
        idx = np.minimum(np.arange(nb * s), h - 1 - r0 * s)      # edge repeat
        return X[:, idx].reshape(X.shape[0], nb, s, X.shape[2]).sum(axis=2)

    def _pool(self, cols: list, r0: int) -> np.ndarray:
        """Average a list of ``ssub`` full-resolution columns (nr_full, Td) into one."""
        s = self.ssub
        while len(cols) < s:
            cols = cols + [cols[-1]]
        X = np.stack(cols)                                       # (s, nr, Td)
        return (self._pool_rows(X, r0).sum(axis=0) * np.float32(1.0 / (s * s))).astype(np.float32)

    def rect(self, r0, r1, c0, c1, t0: int = 0, t1: int | None = None) -> np.ndarray:
        """Averaged data on rows ``r0:r1`` x columns ``c0:c1`` of the grid, averaged frames
        ``t0:t1`` (default all), shape (nc, nr, t1 - t0)."""
        s = self.ssub
        h, w = self.full
        if s == 1:
            return self.reader.avg_rect(r0, r1, c0, c1, self.tsub, t0, t1)
        X = self.reader.avg_rect(r0 * s, min(r1 * s, h), c0 * s, min(c1 * s, w), self.tsub,
                                 t0, t1)
        out = [self._pool(list(X[(j - c0) * s:(j - c0 + 1) * s]), r0) for j in range(c0, c1)]
        return np.stack(out)

    def columns(self):
        """Yield ``(j, column (hd, Td))`` of the grid, in order."""
        s = self.ssub
        if s == 1:
            yield from self.reader.iter_avg_columns(self.tsub)
            return
        group = []
        for c, col in self.reader.iter_avg_columns(self.tsub):
            group.append(col)
            if len(group) == s or c == self.full[1] - 1:
                yield c // s, self._pool(group, 0)
                group = []
