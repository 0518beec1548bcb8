"""Neuron placement and spatial footprints for the simulator.

Footprints are rendered on a canvas of shape ``(Hc, Wc)`` and returned as a sparse
matrix with **C-order** pixel index ``i = row * Wc + col`` (the simulator's internal
order; the ground truth converts to CaImAn's Fortran order).

* ``'2p'``: somata as soft-edged ellipses (radius ``~gsig * 1.25`` px, axis ratio and
  orientation random), most of them with a dark nucleus (donut), with a fine
  multiplicative texture and a small optical blur.
* ``'1p'``: blurry neurons: anisotropic Gaussians with sigma ``~gsig`` px and a mild
  texture, truncated at 3 sigma.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sp

__all__ = ["place_centers", "render_footprints"]


def place_centers(rng: np.random.Generator, dims: tuple[int, int], n: int, *,
                  min_dist: float, pair_frac: float, pair_dist: tuple[float, float],
                  border: float = 1.0) -> np.ndarray:
    """Neuron centers: a hard-core random layout plus overlapping pairs.

    Parameters
    ----------
    dims : (H, W)
        Field of view in pixels.
    n : int
        Number of centers.
    min_dist : float
        Minimum distance between centers that are not a designed pair (px); relaxed
        automatically when the field is too crowded.
    pair_frac : float
        Fraction of neurons placed as the partner of an earlier neuron at a distance
        drawn uniformly from ``pair_dist`` (px), so that their footprints overlap.
    border : float
        Centers stay at least this far (px) from the edges.

    Returns
    -------
    centers : ndarray, shape (n, 2), float64, ``(row, col)`` pixel coordinates.
    """
    H, W = dims
    n_pair = int(round(pair_frac * n))
    n_free = n - n_pair
    pts: list[np.ndarray] = []
    dist = float(min_dist)
    tries = 0
    while len(pts) < n_free:
        p = rng.uniform([border, border], [H - 1 - border, W - 1 - border])
        if not pts or np.min(np.hypot(*(np.asarray(pts) - p).T)) >= dist:
            pts.append(p)
            tries = 0
        else:
            tries += 1
            if tries > 200:
                dist *= 0.9
                tries = 0
    for _ in range(n_pair):
        base = pts[rng.integers(0, len(pts))] if pts else np.array([H / 2, W / 2])
        for _attempt in range(50):
            ang = rng.uniform(0, 2 * np.pi)
            d = rng.uniform(*pair_dist)
            p = base + d * np.array([np.sin(ang), np.cos(ang)])
            if border <= p[0] <= H - 1 - border and border <= p[1] <= W - 1 - border:
                break
        pts.append(np.clip(p, border, [H - 1 - border, W - 1 - border]))
    out = np.asarray(pts, float).reshape(-1, 2)
    return out[rng.permutation(len(out))]


def _texture(rng: np.random.Generator, shape, *, amount: float, scale: float) -> np.ndarray:
    """Smooth multiplicative texture ``1 + amount * z`` (z ~ unit-variance field)."""
    z = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), scale)
    z /= max(float(z.std()), 1e-6)
    return np.clip(1.0 + amount * z, 0.2, None)


def _ellipse_rho(shape, cy, cx, ry, rx, theta) -> np.ndarray:
    """Normalised elliptical radius of each pixel of a patch (1 on the ellipse)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u = c * dy + s * dx
    v = -s * dy + c * dx
    return np.sqrt((u / ry) ** 2 + (v / rx) ** 2)


def _soma_2p(rng, shape, cy, cx, radius) -> np.ndarray:
    """One 2P soma image: soft ellipse, optional nucleus hole, texture, blur."""
    ry = radius * rng.uniform(0.85, 1.2)
    rx = radius * rng.uniform(0.85, 1.2)
    rho = _ellipse_rho(shape, cy, cx, ry, rx, rng.uniform(0, np.pi))
    edge = rng.uniform(0.06, 0.14)
    img = 1.0 / (1.0 + np.exp((rho - 1.0) / edge))
    if rng.random() < 0.7:   # donut: GCaMP is cytosolic, nucleus is dim
        depth = rng.uniform(0.4, 0.85)
        img *= 1.0 - depth * np.exp(-(rho / rng.uniform(0.45, 0.65)) ** 4)
    img *= _texture(rng, shape, amount=0.15, scale=0.8)
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.7)


def _soma_1p(rng, shape, cy, cx, gsig) -> np.ndarray:
    """One 1P neuron image: anisotropic Gaussian with a mild texture."""
    sy = gsig * rng.uniform(0.85, 1.2)
    sx = gsig * rng.uniform(0.85, 1.2)
    rho = _ellipse_rho(shape, cy, cx, sy, sx, rng.uniform(0, np.pi))
    img = np.exp(-0.5 * rho ** 2) * _texture(rng, shape, amount=0.08, scale=1.5)
    img[rho > 3.0] = 0.0
    return img.astype(np.float32)


def render_footprints(rng: np.random.Generator, kind: str, canvas: tuple[int, int],
                      centers: np.ndarray, *, gsig: float) -> sp.csc_matrix:
    """Render all footprints on the canvas.

    Parameters
    ----------
    kind : {'1p', '2p'}
    canvas : (Hc, Wc)
        Canvas size in pixels.
    centers : ndarray, shape (K, 2)
        Centers ``(row, col)`` in canvas coordinates.
    gsig : float
        Neuron size parameter (px): Gaussian sigma for 1P; soma radius is
        ``1.25 * gsig`` for 2P.

    Returns
    -------
    A : scipy.sparse.csc_matrix, shape (Hc*Wc, K), float32
        Footprints with peak ~1, C-order pixel index.
    """
    Hc, Wc = canvas
    half = int(np.ceil(3.6 * gsig)) + 2
    rows, cols, vals = [], [], []
    for k, (y, x) in enumerate(np.asarray(centers, float)):
        y0, x0 = int(np.floor(y)) - half, int(np.floor(x)) - half
        shape = (2 * half + 1, 2 * half + 1)
        if kind == "2p":
            img = _soma_2p(rng, shape, y - y0, x - x0, 1.25 * gsig)
        else:
            img = _soma_1p(rng, shape, y - y0, x - x0, gsig)
        img /= max(float(img.max()), 1e-9)
        yy, xx = np.nonzero(img > 1e-3)
        gy, gx = yy + y0, xx + x0
        ok = (gy >= 0) & (gy < Hc) & (gx >= 0) & (gx < Wc)
        rows.append(gy[ok] * Wc + gx[ok])
        cols.append(np.full(int(ok.sum()), k))
        vals.append(img[yy[ok], xx[ok]])
    K = len(centers)
    if K == 0:
        return sp.csc_matrix((Hc * Wc, 0), dtype=np.float32)
    return sp.csc_matrix((np.concatenate(vals).astype(np.float32),
                          (np.concatenate(rows), np.concatenate(cols))),
                         shape=(Hc * Wc, K))
