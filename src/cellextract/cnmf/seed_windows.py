"""The current filtered data on a seed's window, for corr_pnr's greedy search.

corr_pnr works on the filtered patch minus each pixel's baseline, from which every
component found is subtracted (``coef_i * c`` on the pixels around it). A seed reads and
changes only a window of ``R + kernel radius + 1`` pixels around it, over all frames.
:class:`FilteredStore` provides that window, in one of three ways:

* the whole filtered patch is kept (it fits in the memory budget): a view, subtractions
  are made in place;
* otherwise tiles of the filtered patch are cached, as many as fit in the budget: first
  those around the best seed candidates, then the missing tiles of each window (least
  recently used ones dropped). Tiles are computed from the movie (:func:`filter_block` on
  the averaged movie around them, baseline removed, the recorded subtractions replayed
  in order) and kept current by replaying each new subtraction; a window is copied from
  its tiles. When the cache holds less than two windows' tiles (long movies) missing
  tiles are not loaded: the window, like a single-pixel trace outside the cache, is
  recomputed directly.

All three give the same numbers up to the rounding of the BLAS products (the same
float operations on the same values otherwise).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import scipy.ndimage as ndi

from cellextract.cnmf.filtered_patch import PatchStats, filter_block

__all__ = ["FilteredStore"]


class FilteredStore:
    """Current filtered data (baseline removed, found components subtracted) on windows.

    Parameters
    ----------
    movie : AveragedMovie
    kernel : ndarray
    stats : PatchStats
        ``stats.F`` (kept patch) is updated in place by the caller's subtractions;
        without it, :meth:`record` must be called after each subtraction.
    tile : int
        Side of the cached tiles (pixels of the search grid).
    """

    def __init__(self, movie, kernel, stats: PatchStats, *, tile: int = 16):
        self.movie, self.kernel, self.stats = movie, kernel, stats
        self.kr = (kernel.shape[0] // 2, kernel.shape[1] // 2)
        self.ts = int(tile)
        self.tiles = OrderedDict()         # (i, j) -> current filtered data, LRU order
        self.capacity = 0
        self.subtracted: list = []         # (rows, cols, coef, trace), patch coordinates
        self.n_computed = self.n_cached = 0

    @property
    def kept(self) -> bool:
        return self.stats.F is not None

    def raw(self, r0, r1, c0, c1) -> np.ndarray:
        """Averaged movie on a rectangle, (rows, cols, T)."""
        return np.ascontiguousarray(self.movie.rect(r0, r1, c0, c1).transpose(1, 0, 2))

    def _tile_rect(self, i, j):
        h, w = self.movie.shape
        return i * self.ts, min((i + 1) * self.ts, h), j * self.ts, min((j + 1) * self.ts, w)

    def _tiles_of(self, r0, r1, c0, c1):
        return [(i, j) for i in range(r0 // self.ts, (r1 - 1) // self.ts + 1)
                for j in range(c0 // self.ts, (c1 - 1) // self.ts + 1)]

    def fill(self, priority: np.ndarray, max_bytes: float, margin: int) -> int:
        """Cache the tiles near the pixels of highest ``priority`` (h, w) (0: none), as
        many as fit in ``max_bytes``, and keep that budget for later misses (least
        recently used tiles are dropped). Call before any subtraction. Returns the number
        of tiles cached."""
        if self.kept or max_bytes <= 0:
            return 0
        h, w = self.movie.shape
        self.capacity = int(max_bytes // (4.0 * self.ts * self.ts * self.movie.Td))
        if not (priority > 0).any():
            return 0
        near = ndi.maximum_filter(priority, size=2 * margin + 1, mode="constant")
        nti, ntj = -(-h // self.ts), -(-w // self.ts)
        score = [(float(near[r0:r1, c0:c1].max()), (i, j))
                 for i in range(nti) for j in range(ntj)
                 for r0, r1, c0, c1 in [self._tile_rect(i, j)]]
        chosen = [ij for sc, ij in sorted(score, key=lambda x: -x[0]) if sc > 0]
        self._load(chosen[:self.capacity])
        return len(self.tiles)

    def _load(self, tiles: list) -> None:
        """Compute and cache tiles (one computation per run of tiles in a tile column)."""
        for j in sorted({j for _, j in tiles}):
            rows = sorted(i for i, jj in tiles if jj == j)
            runs = np.split(np.array(rows), np.flatnonzero(np.diff(rows) > 1) + 1)
            for run in runs:
                r0, _, c0, c1 = self._tile_rect(run[0], j)
                r1 = self._tile_rect(run[-1], j)[1]
                F = self._compute(r0, r1, c0, c1)
                for i in run:
                    a0, a1, _, _ = self._tile_rect(i, j)
                    self.tiles[(int(i), j)] = np.ascontiguousarray(F[a0 - r0:a1 - r0])
                    self.tiles.move_to_end((int(i), j))

    def _compute(self, r0, r1, c0, c1, chunk_bytes: float = 2e6) -> np.ndarray:
        """Filtered data on a rectangle recomputed from the movie, subtractions replayed."""
        h, w = self.movie.shape
        kh, kw = self.kr
        R0, R1, C0, C1 = max(r0 - kh, 0), min(r1 + kh, h), max(c0 - kw, 0), min(c1 + kw, w)
        T = self.movie.Td
        F = np.empty((r1 - r0, c1 - c0, T), np.float32)
        step = max(16, int(chunk_bytes // (4 * (R1 - R0) * (C1 - C0))))
        for a in range(0, T, step):
            b = min(T, a + step)
            Y = self.movie.rect(R0, R1, C0, C1, a, b)              # (cols, rows, n)
            Fc = filter_block(Y, (C0, C1), (c0, c1), w, self.kernel, rows_out=(r0 - R0, r1 - R0))
            F[:, :, a:b] = Fc.transpose(1, 0, 2)
        F -= self.stats.base[r0:r1, c0:c1, None]
        for rr, cc, coef, c in self.subtracted:
            _subtract(F, r0, c0, rr, cc, coef, c)
        return F

    def window(self, r0, r1, c0, c1) -> np.ndarray:
        """Current filtered data on a rectangle, (rows, cols, T): a view of the kept patch
        (changes persist), else a copy (from cached tiles, computing the missing ones when
        they fit in the cache, or recomputed from the movie)."""
        if self.kept:
            return self.stats.F[r0:r1, c0:c1]
        need = self._tiles_of(r0, r1, c0, c1)
        missing = [ij for ij in need if ij not in self.tiles]
        if missing and (2 * len(need) > self.capacity or r1 - r0 == 1 == c1 - c0):
            self.n_computed += 1
            return self._compute(r0, r1, c0, c1)
        if missing:
            self.n_computed += 1
            for ij in list(self.tiles):                 # least recently used first
                if len(self.tiles) + len(missing) <= self.capacity:
                    break
                if ij not in need:
                    del self.tiles[ij]
            self._load(missing)
        self.n_cached += 1
        F = np.empty((r1 - r0, c1 - c0, self.movie.Td), np.float32)
        for ij in need:
            self.tiles.move_to_end(ij)
            a0, a1, b0, b1 = self._tile_rect(*ij)
            y0, y1, x0, x1 = max(a0, r0), min(a1, r1), max(b0, c0), min(b1, c1)
            F[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = self.tiles[ij][y0 - a0:y1 - a0, x0 - b0:x1 - b0]
        return F

    def trace(self, r: int, c: int) -> np.ndarray:
        """Current filtered trace of one pixel, (T,)."""
        return np.array(self.window(r, r + 1, c, c + 1)[0, 0], np.float32)

    def record(self, rows, cols, coef, trace) -> None:
        """``coef[i] * trace`` was subtracted at pixel ``(rows[i], cols[i])`` of a window
        copy: remember it and apply it to the cached tiles (no-op for a kept patch)."""
        if self.kept:
            return
        rec = (np.asarray(rows), np.asarray(cols), np.asarray(coef, np.float32),
               np.asarray(trace, np.float32))
        self.subtracted.append(rec)
        if rec[0].size:
            for ij in self._tiles_of(rec[0].min(), rec[0].max() + 1, rec[1].min(), rec[1].max() + 1):
                if ij in self.tiles:
                    a0, _, b0, _ = self._tile_rect(*ij)
                    _subtract(self.tiles[ij], a0, b0, *rec)


def _subtract(F, r0, c0, rr, cc, coef, c) -> None:
    """In place: ``F[rr - r0, cc - c0] -= coef * c`` for the pixels inside ``F``."""
    sel = (rr >= r0) & (rr < r0 + F.shape[0]) & (cc >= c0) & (cc < c0 + F.shape[1])
    if sel.any():
        F[rr[sel] - r0, cc[sel] - c0] -= coef[sel][:, None] * c[None, :]
