"""Footprint images one at a time from the sparse ``A`` (no dense (K, H, W) array).

``A`` is (H*W, K) with pixel index ``row + col * H`` (Fortran order), so column ``k``
reshaped to (W, H) and transposed is the (H, W) image in the movie's orientation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["FootprintImages"]


class FootprintImages:
    """Lazy sequence of footprint images.

    Parameters
    ----------
    A : scipy.sparse matrix, shape (H*W, K)
        Footprints, Fortran pixel order.
    dims : tuple of int
        ``(H, W)``.

    Examples
    --------
    ``FootprintImages(est.A, est.dims)[k]`` is an (H, W) float32 array.
    """

    def __init__(self, A, dims: tuple[int, int]):
        self._A = sp.csc_matrix(A)
        self.dims = (int(dims[0]), int(dims[1]))
        if self._A.shape[0] != self.dims[0] * self.dims[1]:
            raise ValueError(f"A has {self._A.shape[0]} rows, dims {self.dims} need "
                             f"{self.dims[0] * self.dims[1]}")

    def __len__(self) -> int:
        return int(self._A.shape[1])

    def __getitem__(self, k: int) -> np.ndarray:
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        k %= len(self)
        H, W = self.dims
        lo, hi = self._A.indptr[k], self._A.indptr[k + 1]
        flat = np.zeros(H * W, dtype=np.float32)
        flat[self._A.indices[lo:hi]] = self._A.data[lo:hi]
        return flat.reshape(W, H).T.copy()

    def support(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-zero pixels of footprint ``k``: ``(rows, cols, weights)``."""
        H = self.dims[0]
        lo, hi = self._A.indptr[k], self._A.indptr[k + 1]
        idx = self._A.indices[lo:hi]
        return idx % H, idx // H, np.asarray(self._A.data[lo:hi], dtype=np.float32)
