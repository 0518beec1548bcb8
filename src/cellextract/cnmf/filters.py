"""Spatial kernels and frame filtering used by the CNMF / CNMF-E initialisation.

CNMF-E (Zhou et al., eLife 2018) finds neurons in one-photon data after filtering each
frame with a *mean-centred* Gaussian kernel: a Gaussian of width ``gSig`` minus its mean
over its (disc-shaped) support. The kernel sums to zero over its support, so spatially
smooth background (constant or linear over the kernel) is removed, while a neuron-sized
blob gives a strong positive response at its centre. CNMF (Pnevmatikakis et al., 2016)
uses a plain Gaussian for the greedy ROI search in two-photon data.

Sizes follow CaImAn's conventions: ``gSig`` is the Gaussian standard deviation (pixels),
``gSiz`` the full width of the kernel / neuron box (forced odd).
"""

from __future__ import annotations

import cv2
import numpy as np

from cellextract.errors import ParameterError

__all__ = ["as_pair", "odd_size", "gaussian_kernel", "center_psf_kernel", "spatial_filter",
           "filter_image"]


def as_pair(v, name: str = "value") -> tuple[float, float]:
    """Return ``v`` as a pair ``(rows, cols)``; scalars are duplicated.

    Raises
    ------
    ParameterError
        If ``v`` is not a positive scalar or a pair of positive numbers.
    """
    if np.isscalar(v):
        v = (v, v)
    try:
        a, b = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number or a pair of numbers, got {v!r}") from None
    if not (a > 0 and b > 0):
        raise ParameterError(f"{name} must be positive, got {v!r}")
    return a, b


def odd_size(gSiz, gSig=None) -> tuple[int, int]:
    """Kernel / box full size as an odd pair of ints.

    Parameters
    ----------
    gSiz : int, pair or None
        Requested size in pixels; None means ``2 * ceil(2 * gSig) + 1`` (a +-2 sigma box).
    gSig : float or pair, optional
        Gaussian width, used only when ``gSiz`` is None.
    """
    if gSiz is None:
        if gSig is None:
            raise ParameterError("gSiz or gSig must be given")
        gs = as_pair(gSig, "gSig")
        return tuple(int(2 * np.ceil(2 * s) + 1) for s in gs)  # type: ignore[return-value]
    sz = as_pair(gSiz, "gSiz")
    return tuple(int(round(s)) // 2 * 2 + 1 for s in sz)  # type: ignore[return-value]


def gaussian_kernel(gSig, gSiz=None) -> np.ndarray:
    """Normalised 2-D Gaussian kernel.

    Parameters
    ----------
    gSig : float or (float, float)
        Standard deviation along (rows, cols), pixels.
    gSiz : int or (int, int), optional
        Full kernel size (made odd); default ``2 * ceil(2 * gSig) + 1``.

    Returns
    -------
    ndarray, shape (gSiz_r, gSiz_c), float32
        Non-negative, sums to 1.
    """
    sr, sc = as_pair(gSig, "gSig")
    hr, hc = odd_size(gSiz, (sr, sc))
    r = np.arange(hr) - hr // 2
    c = np.arange(hc) - hc // 2
    k = np.exp(-0.5 * (r[:, None] / sr) ** 2 - 0.5 * (c[None, :] / sc) ** 2)
    return (k / k.sum()).astype(np.float32)


def center_psf_kernel(gSig, gSiz=None) -> np.ndarray:
    """Mean-centred Gaussian kernel of CNMF-E.

    A Gaussian on the full ``gSiz`` box minus its mean over that box, scaled so that its
    positive part sums to 1. It sums to zero, so constant images (and, by symmetry,
    linear ramps) give zero response, while a blob of width ~``gSig`` gives a strong
    positive response at its centre. The square support (rather than CNMF-E's disc)
    keeps the kernel rank 2, so :func:`spatial_filter` applies it as two separable
    passes (about 8x faster than a dense 13 x 13 correlation).

    Parameters
    ----------
    gSig : float or (float, float)
        Gaussian standard deviation (rows, cols), pixels.
    gSiz : int or (int, int), optional
        Full kernel size (made odd); default ``2 * ceil(2 * gSig) + 1``.

    Returns
    -------
    ndarray, shape (gSiz_r, gSiz_c), float32
        Zero-sum kernel.
    """
    g = gaussian_kernel(gSig, gSiz).astype(np.float64)
    k = g - g.mean()
    k /= k[k > 0].sum()
    return k.astype(np.float32)


def _separable_terms(kernel: np.ndarray, max_rank: int = 3):
    """Split ``kernel`` into at most ``max_rank`` separable terms, or None if it is not
    (numerically) of that low rank. Returns a list of (column vector, row vector)."""
    k = np.asarray(kernel, dtype=np.float64)
    u, s, vt = np.linalg.svd(k)
    tol = 1e-6 * s[0] if s.size and s[0] > 0 else 0.0
    r = int(np.sum(s > tol))
    if r == 0 or r > max_rank:
        return None
    return [((u[:, i] * s[i]).astype(np.float32)[:, None], vt[i].astype(np.float32)[:, None])
            for i in range(r)]


def spatial_filter(frames: np.ndarray, kernel: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Correlate every frame with ``kernel`` (OpenCV, reflected borders, float32).

    Kernels of numerical rank <= 3 (Gaussian: rank 1; :func:`center_psf_kernel`: rank 2)
    are applied as separable passes with ``cv2.sepFilter2D``; others with
    ``cv2.filter2D``.

    Parameters
    ----------
    frames : ndarray, shape (n, h, w) or (h, w)
        Frames; converted to float32.
    kernel : ndarray, shape (kr, kc)
        Filter kernel (odd sizes; symmetric kernels make correlation = convolution).
    out : ndarray, shape (n, h, w), float32, optional
        Output buffer (may be ``frames`` itself when it is float32 and C-contiguous).

    Returns
    -------
    ndarray, same shape as ``frames``, float32
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    terms = _separable_terms(kernel)
    if frames.ndim == 2:
        return _filter_one(np.ascontiguousarray(frames, dtype=np.float32), kernel, terms)
    if out is None:
        out = np.empty(frames.shape, dtype=np.float32)
    for i in range(frames.shape[0]):
        out[i] = _filter_one(np.ascontiguousarray(frames[i], dtype=np.float32), kernel, terms)
    return out


def _filter_one(img: np.ndarray, kernel: np.ndarray, terms) -> np.ndarray:
    if terms is None:
        return cv2.filter2D(img, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT)
    res = None
    for kc, kr in terms:
        # sepFilter2D(kernelX = along columns of the image (x), kernelY = along rows (y))
        part = cv2.sepFilter2D(img, cv2.CV_32F, kr, kc, borderType=cv2.BORDER_REFLECT)
        res = part if res is None else cv2.add(res, part)
    return res


def filter_image(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate one image ``(h, w)`` with ``kernel``; float32, reflected borders."""
    kernel = np.asarray(kernel, dtype=np.float32)
    return _filter_one(np.ascontiguousarray(img, dtype=np.float32), kernel, _separable_terms(kernel))
