"""Ground truth of a simulated movie and its HDF5 file.

File layout (``<stem>_truth.h5``):

============== ================== ===================================================
dataset        shape / dtype      meaning
============== ================== ===================================================
``A``          (H*W, K) float32   footprints, Fortran pixel order (``i = row + col*H``),
                                  unit L2 columns, vignetting and vessels included
``C``          (K, T) float32     calcium (units matching unit-norm ``A``), no baseline
``S``          (K, T) float32     AR innovation ("spikes"): ``C_t = g1 C_{t-1} + g2
                                  C_{t-2} + S_t``
``baseline``   (K,) float32       resting fluorescence; neuron movie = ``A (baseline + C)``
``g``          (K, p) float64     AR coefficients of each neuron
``amplitude``  (K,) float32       single-spike peak of ``C``
``snr``        (K,) float32       ``amplitude`` / noise sd of the footprint-projected trace
``centers``    (K, 2) float32     ``(row, col)`` px in the unmoved frame
``shifts``     (T, 2) float32     rigid registration shifts ``(dy, dx)`` (see
                                  :mod:`cellextract.simulate.motion`); for pw-rigid the
                                  rigid part (mean of the field nodes)
``shift_field`` (T, 2, gh, gw)    coarse registration shift field (``gh = gw = 1`` and
                                  equal to ``shifts`` unless motion is pw-rigid)
``background`` (H, W) float32     mean noise-free background incl. vignetting and offset
``noise_sd``   (H, W) float32     per-pixel noise standard deviation at mean brightness
============== ================== ===================================================

Attributes: ``fr, dims, kind, seed, decay_time, motion, max_shift, n_frames``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.estimates import footprint_images
from cellextract.errors import InputError

__all__ = ["Truth", "write_truth", "load_truth"]


@dataclass
class Truth:
    """Ground truth of one simulated movie (see module docstring for fields)."""

    A: sp.csc_matrix
    C: np.ndarray
    S: np.ndarray
    baseline: np.ndarray
    g: np.ndarray
    amplitude: np.ndarray
    snr: np.ndarray
    centers: np.ndarray
    shifts: np.ndarray
    shift_field: np.ndarray
    background: np.ndarray
    noise_sd: np.ndarray
    fr: float
    dims: tuple[int, int]
    kind: str
    seed: int
    decay_time: float
    motion: str = "none"
    max_shift: float = 0.0

    @property
    def n_neurons(self) -> int:
        """Number of true neurons ``K``."""
        return int(self.A.shape[1])

    @property
    def n_frames(self) -> int:
        """Number of frames ``T``."""
        return int(self.C.shape[1])

    def footprints_2d(self) -> np.ndarray:
        """Footprints as images, shape (K, H, W), float32."""
        return footprint_images(self.A, self.dims)


_ARRAYS = ("C", "S", "baseline", "g", "amplitude", "snr", "centers", "shifts",
           "shift_field", "background", "noise_sd")
_ATTRS = ("fr", "kind", "seed", "decay_time", "motion", "max_shift")


def write_truth(path, truth: Truth) -> Path:
    """Write ``truth`` to an HDF5 file (``A`` written column by column, gzip)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    P, K = truth.A.shape
    with h5py.File(path, "w") as f:
        dA = f.create_dataset("A", shape=(P, K), dtype="f4", compression="gzip",
                              chunks=(min(P, 1 << 16), 1) if K else None)
        A = truth.A.tocsc()
        for k in range(K):
            col = np.zeros(P, np.float32)
            sl = slice(A.indptr[k], A.indptr[k + 1])
            col[A.indices[sl]] = A.data[sl]
            dA[:, k] = col
        for name in _ARRAYS:
            arr = np.asarray(getattr(truth, name))
            f.create_dataset(name, data=arr, compression="gzip" if arr.size > 4096 else None)
        for name in _ATTRS:
            f.attrs[name] = getattr(truth, name)
        f.attrs["dims"] = np.asarray(truth.dims, int)
        f.attrs["n_frames"] = truth.n_frames
    return path


def load_truth(path) -> Truth:
    """Read a truth file written by :func:`write_truth`.

    Raises
    ------
    InputError
        If the file is missing or is not a simulation truth file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"truth file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            dA = f["A"]
            P, K = dA.shape
            cols = []
            step = max(1, (1 << 24) // max(P, 1))
            for k0 in range(0, K, step):
                cols.append(sp.csc_matrix(dA[:, k0:k0 + step]))
            A = sp.hstack(cols, format="csc") if cols else sp.csc_matrix((P, 0), dtype=np.float32)
            kw = {name: f[name][()] for name in _ARRAYS}
            at = {name: f.attrs[name] for name in _ATTRS}
            dims = tuple(int(v) for v in f.attrs["dims"])
    except (OSError, KeyError) as exc:
        raise InputError(f"not a simulation truth file: {path} ({exc})") from exc
    at = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in at.items()}
    return Truth(A=A.astype(np.float32), dims=dims, fr=float(at["fr"]), kind=str(at["kind"]),
                 seed=int(at["seed"]), decay_time=float(at["decay_time"]),
                 motion=str(at["motion"]), max_shift=float(at["max_shift"]), **kw)
