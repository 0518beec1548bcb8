"""A small CNN that scores footprint crops as neuron-like; inference in pure numpy.

Crops
    Each footprint is cut around its centre of mass in a square of half-width
    ``CROP_SCALE * gSig`` pixels (per axis), resampled bilinearly to ``CROP_SIZE x CROP_SIZE``
    (zero outside the field of view) and divided by its maximum, so values lie in [0, 1].
    With ``CROP_SCALE = 4`` a neuron of radius ``gSig`` covers about a quarter of the crop width.

Network (our own; weights in ``cellextract/data/cnn_weights.npz``, trained by
:mod:`cellextract.evaluate.train`)
    input (B, 32, 32, 1)
    -> conv 3x3 stride 2, 8 filters, ReLU      -> (B, 16, 16, 8)
    -> conv 3x3, 16 filters, ReLU, max-pool 2  -> (B, 8, 8, 16)
    -> conv 3x3, 16 filters, ReLU, max-pool 2  -> (B, 4, 4, 16)
    -> dense 256 -> 32, ReLU -> dense 32 -> 1, sigmoid = P(neuron).

Convolutions use zero 'same' padding; tensors are NHWC; a conv weight has shape
``(3, 3, C_in, C_out)``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
import scipy.sparse as sp

__all__ = ["CROP_SIZE", "CROP_SCALE", "crop_image", "crops_from_A", "forward", "predict",
           "predict_components", "load_weights", "init_weights", "LAYERS"]

CROP_SIZE = 32
CROP_SCALE = 4.0
#: (name, kind, shape) of every parameter, in order
LAYERS = (("c1", "conv", (3, 3, 1, 8)), ("c2", "conv", (3, 3, 8, 16)),
          ("c3", "conv", (3, 3, 16, 16)), ("d1", "dense", (256, 32)), ("d2", "dense", (32, 1)))


def _pair(g) -> tuple[float, float]:
    g = np.atleast_1d(np.asarray(g, dtype=np.float64)).ravel()
    if g.size == 1:
        g = np.repeat(g, 2)
    if g.size != 2 or np.any(~np.isfinite(g)) or np.any(g <= 0):
        raise ValueError(f"gSig must be a positive number or pair, got {g!r}")
    return float(g[0]), float(g[1])


def _resample(patch: np.ndarray, origin: tuple[float, float], center: tuple[float, float],
              half: tuple[float, float], size: int) -> np.ndarray:
    """Bilinear resampling of ``patch`` (whose pixel (0, 0) is image pixel ``origin``)."""
    step_y, step_x = 2.0 * half[0] / size, 2.0 * half[1] / size
    # output pixel u -> image coordinate centre + (u - (size - 1) / 2) * step
    M = np.array([[step_x, 0.0, center[1] - origin[1] - (size - 1) / 2.0 * step_x],
                  [0.0, step_y, center[0] - origin[0] - (size - 1) / 2.0 * step_y]])
    interp = cv2.INTER_LINEAR
    if min(step_x, step_y) > 1.5:   # downsampling: low-pass first to avoid aliasing
        patch = cv2.GaussianBlur(patch, (0, 0), sigmaX=0.4 * step_x, sigmaY=0.4 * step_y)
    return cv2.warpAffine(patch, M, (size, size), flags=interp | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def _normalise(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, None)
    m = float(c.max())
    return (c / m if m > 0 else c).astype(np.float32)


def crop_image(img: np.ndarray, *, gSig, size: int = CROP_SIZE, scale: float = CROP_SCALE,
               center: tuple[float, float] | None = None) -> np.ndarray:
    """Centred, normalised crop of one footprint image.

    Parameters
    ----------
    img : ndarray, shape (H, W)
        Footprint (non-negative).
    gSig : float or (float, float)
        Neuron radius in pixels (rows, cols); the crop spans ``2 * scale * gSig``.
    size : int
        Output side length in pixels.
    scale : float
        Crop half-width in units of ``gSig``.
    center : (float, float) or None
        ``(row, col)``; default the centre of mass of the positive part.

    Returns
    -------
    ndarray, shape (size, size), float32, values in [0, 1].
    """
    img = np.clip(np.asarray(img, dtype=np.float32), 0, None)
    gy, gx = _pair(gSig)
    if center is None:
        tot = float(img.sum())
        if tot <= 0:
            return np.zeros((size, size), np.float32)
        yy, xx = np.indices(img.shape)
        center = (float((yy * img).sum() / tot), float((xx * img).sum() / tot))
    c = _resample(img, (0.0, 0.0), center, (scale * gy, scale * gx), size)
    return _normalise(c)


def crops_from_A(A: sp.spmatrix, dims: tuple[int, int], *, gSig, size: int = CROP_SIZE,
                 scale: float = CROP_SCALE) -> np.ndarray:
    """Crops of all footprints without densifying ``A``.

    Parameters
    ----------
    A : sparse matrix, shape (H*W, K)
        Footprints, Fortran pixel order (``i = row + col * H``).
    dims : (int, int)
        ``(H, W)``.
    gSig, size, scale
        As in :func:`crop_image`.

    Returns
    -------
    ndarray, shape (K, size, size), float32.
    """
    A = sp.csc_matrix(A)
    H, W = (int(d) for d in dims)
    gy, gx = _pair(gSig)
    half = (scale * gy, scale * gx)
    out = np.zeros((A.shape[1], size, size), np.float32)
    for k in range(A.shape[1]):
        s0, s1 = A.indptr[k], A.indptr[k + 1]
        v = np.clip(A.data[s0:s1].astype(np.float64), 0, None)
        if v.sum() <= 0:
            continue
        idx = A.indices[s0:s1]
        r, c = idx % H, idx // H
        cy, cx = float((r * v).sum() / v.sum()), float((c * v).sum() / v.sum())
        y0 = max(0, int(np.floor(cy - half[0])) - 2)
        y1 = min(H, int(np.ceil(cy + half[0])) + 3)
        x0 = max(0, int(np.floor(cx - half[1])) - 2)
        x1 = min(W, int(np.ceil(cx + half[1])) + 3)
        patch = np.zeros((max(1, y1 - y0), max(1, x1 - x0)), np.float32)
        ok = (r >= y0) & (r < y1) & (c >= x0) & (c < x1)
        patch[r[ok] - y0, c[ok] - x0] = v[ok]
        out[k] = _normalise(_resample(patch, (y0, x0), (cy, cx), half, size))
    return out


# ----------------------------------------------------------------------------- network


def init_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """He-initialised parameters ``{name}_w``, ``{name}_b`` for every layer of :data:`LAYERS`."""
    p = {}
    for name, _, shape in LAYERS:
        fan_in = int(np.prod(shape[:-1]))
        p[f"{name}_w"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        p[f"{name}_b"] = np.zeros(shape[-1], np.float32)
    return p


def im2col(x: np.ndarray, stride: int = 1) -> np.ndarray:
    """3x3 'same' patches of NHWC ``x`` as rows: (B*Ho*Wo, 9*C), ordered (dy, dx, c).

    ``Ho = H // stride``; with stride 2 the patches are centred on even pixels.
    """
    B, H, W, C = x.shape
    Ho, Wo = H // stride, W // stride
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.empty((B, Ho, Wo, 3, 3, C), x.dtype)
    for dy in range(3):
        for dx in range(3):
            cols[:, :, :, dy, dx, :] = xp[:, dy:dy + H:stride, dx:dx + W:stride, :]
    return cols.reshape(B * Ho * Wo, 9 * C)


def conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1) -> np.ndarray:
    """'Same' 3x3 convolution (cross-correlation), NHWC in/out, ``w`` (3, 3, C_in, C_out)."""
    B, H, W, _ = x.shape
    return (im2col(x, stride) @ w.reshape(-1, w.shape[-1]) + b).reshape(
        B, H // stride, W // stride, -1)


def maxpool2(x: np.ndarray) -> np.ndarray:
    """2x2 max pooling, NHWC (H, W even)."""
    return np.maximum(np.maximum(x[:, 0::2, 0::2], x[:, 1::2, 0::2]),
                      np.maximum(x[:, 0::2, 1::2], x[:, 1::2, 1::2]))


#: stride and pooling of the conv layers
CONV = (("c1", 2, False), ("c2", 1, True), ("c3", 1, True))


def forward(params: dict[str, np.ndarray], crops: np.ndarray, *, return_cache: bool = False):
    """Network logits for crops.

    Parameters
    ----------
    params : dict
        Weights (see :func:`init_weights`).
    crops : ndarray, shape (B, 32, 32)
        Output of :func:`crops_from_A` / :func:`crop_image`.
    return_cache : bool
        Also return the intermediate activations (for training).

    Returns
    -------
    logits : ndarray, shape (B,)
    cache : list of per-layer tuples (only if ``return_cache``)
    """
    x = np.asarray(crops, dtype=np.float32)[..., None]
    cache = []
    for name, stride, pool in CONV:
        z = conv3x3(x, params[f"{name}_w"], params[f"{name}_b"], stride)
        a = np.maximum(z, 0)
        p = maxpool2(a) if pool else a
        cache.append((x, a, p))
        x = p
    flat = x.reshape(x.shape[0], -1)
    h = np.maximum(flat @ params["d1_w"] + params["d1_b"], 0)
    logits = (h @ params["d2_w"] + params["d2_b"])[:, 0]
    cache.append((flat, h))
    return (logits, cache) if return_cache else logits


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def default_weights_path():
    """Path of the committed weights file ``cellextract/data/cnn_weights.npz``."""
    return resources.files("cellextract") / "data" / "cnn_weights.npz"


@lru_cache(maxsize=4)
def load_weights(path: str | None = None) -> dict[str, np.ndarray]:
    """Load network weights (default: the committed file)."""
    p = default_weights_path() if path is None else path
    with np.load(str(p)) as z:
        params = {k: z[k].astype(np.float32) for k in z.files if not k.startswith("meta_")}
    for name, _, shape in LAYERS:
        if params[f"{name}_w"].shape != shape:
            raise ValueError(f"{p}: layer {name} has shape {params[f'{name}_w'].shape}, "
                             f"expected {shape}")
    return params


def predict(crops: np.ndarray, *, params: dict | None = None, batch: int = 256) -> np.ndarray:
    """P(neuron) of each crop, shape (B,), float64 in [0, 1]."""
    params = load_weights() if params is None else params
    crops = np.asarray(crops, dtype=np.float32)
    out = np.zeros(crops.shape[0])
    for i in range(0, crops.shape[0], batch):
        out[i:i + batch] = sigmoid(forward(params, crops[i:i + batch]))
    return out


def predict_components(A: sp.spmatrix, dims: tuple[int, int], *, gSig, gSig_range=None,
                       params: dict | None = None) -> np.ndarray:
    """CNN score of every footprint, the best over the neuron sizes tried.

    Parameters
    ----------
    A : sparse matrix, shape (H*W, K)
        Footprints, Fortran pixel order.
    dims : (int, int)
        ``(H, W)``.
    gSig : int or pair
        Neuron radius in pixels, used when ``gSig_range`` is None.
    gSig_range : sequence or None
        Neuron sizes (numbers or pairs) to try; each component keeps its maximum score.
    params : dict or None
        Network weights (default: the committed file).

    Returns
    -------
    ndarray, shape (K,), float64 in [0, 1].
    """
    sizes = [gSig] if gSig_range is None or len(gSig_range) == 0 else list(gSig_range)
    K = A.shape[1]
    best = np.zeros(K)
    if K == 0:
        return best
    for g in sizes:
        best = np.maximum(best, predict(crops_from_A(A, dims, gSig=g), params=params))
    return best
