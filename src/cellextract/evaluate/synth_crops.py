"""Labelled synthetic footprints for training and testing the CNN classifier.

Every sample is rendered on its own small canvas for a nominal neuron radius ``g`` (px) and cut
with :func:`cellextract.evaluate.cnn.crop_image` exactly as at inference.

Positives (label 1): a single neuron, as the engine would return it —

* 1P-like anisotropic Gaussians (sigma 0.6-1.5 g, truncated at 2.5-3.2 sigma), 2P-like soft
  ellipses (radius 0.9-2 g) with or without a dark nucleus, and, when available, footprints from
  the project simulator (:mod:`cellextract.simulate.footprints`);
* augmented with multiplicative texture, uneven (lopsided) brightness, a weak square pedestal of
  background, weak leakage from up to three neighbours (peak <= 0.35),
  grid/stripe texture and grainy noise (as in noisy engine footprints), additive positive noise,
  thresholding of the lowest values, truncation to a square box, blur.

Negatives (label 0), one of:

* ``noise``: speckle without a coherent shape; ``speck``: a 1-2 px dot;
* ``background``: broad smooth blobs, ramps and smooth random fields;
* ``fragment``: a cell cut by a line, or an arc of a donut;
* ``double``: two comparable cells (amplitude ratio >= 0.5) merged in one footprint;
* ``vessel``: thin elongated curves longer than 5 g;
* ``offcentre``: a cell plus a comparable diffuse mass 2-3.5 g away (centroid off the cell).

The same augmentations (texture, noise, thresholding, truncation, blur) are applied to
negatives, so none of them is a class cue.
"""

from __future__ import annotations

import cv2
import numpy as np

from .cnn import CROP_SCALE, CROP_SIZE, crop_image

__all__ = ["make_dataset", "NEGATIVE_KINDS"]

NEGATIVE_KINDS = ("noise", "speck", "background", "fragment", "double", "vessel", "offcentre")


def _grid(S):
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    return yy, xx


def _rho(S, cy, cx, ry, rx, theta):
    yy, xx = _grid(S)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * dy + s * dx, -s * dy + c * dx
    return np.sqrt((u / ry) ** 2 + (v / rx) ** 2)


def _texture(rng, S, amount, scale=1.0):
    z = cv2.GaussianBlur(rng.standard_normal((S, S)).astype(np.float32), (0, 0), scale)
    z /= max(float(z.std()), 1e-6)
    return np.clip(1.0 + amount * z, 0.2, None)


def _cell(rng, S, cy, cx, g, *, kind=None):
    """One neuron image (peak 1) of nominal radius ``g`` centred at (cy, cx)."""
    kind = kind or rng.choice(["gauss", "soma", "sim"], p=[0.4, 0.4, 0.2])
    theta = rng.uniform(0, np.pi)
    if kind == "sim":
        img = _sim_cell(rng, S, cy, cx, g)
        if img is not None:
            return img
        kind = "gauss"
    if kind == "gauss":
        sig = g * rng.uniform(0.6, 1.5)
        rho = _rho(S, cy, cx, sig * rng.uniform(0.8, 1.25), sig * rng.uniform(0.8, 1.25), theta)
        img = np.exp(-0.5 * rho ** 2) * _texture(rng, S, rng.uniform(0, 0.15), 1.5)
        img[rho > rng.uniform(2.5, 3.2)] = 0
    else:
        r = g * rng.uniform(0.9, 2.0)
        rho = _rho(S, cy, cx, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2), theta)
        img = 1.0 / (1.0 + np.exp((rho - 1.0) / rng.uniform(0.05, 0.2)))
        if rng.random() < 0.6:
            img *= 1.0 - rng.uniform(0.3, 0.85) * np.exp(-(rho / rng.uniform(0.4, 0.65)) ** 4)
        img *= _texture(rng, S, rng.uniform(0.05, 0.25), 0.8)
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(0.4, 1.0))
    return (img / max(float(img.max()), 1e-9)).astype(np.float32)


def _sim_cell(rng, S, cy, cx, g):
    """A footprint from the project simulator, if it is installed (else None)."""
    try:
        from cellextract.simulate.footprints import render_footprints
    except Exception:       # simulator not available: fall back to our own shapes
        return None
    kind = "1p" if rng.random() < 0.5 else "2p"
    gs = g * rng.uniform(0.7, 1.3) * (1.0 if kind == "1p" else 0.9)
    A = render_footprints(rng, kind, (S, S), np.array([[cy, cx]]), gsig=gs)
    img = np.asarray(A[:, 0].toarray()).reshape(S, S)      # simulator: C-order pixels
    return (img / max(float(img.max()), 1e-9)).astype(np.float32)


def _curve(rng, S, cy, cx, g):
    """A thin smooth curve (vessel/dendrite-like) through about (cy, cx)."""
    L = g * rng.uniform(5, 14)
    ang = rng.uniform(0, np.pi)
    bend = rng.uniform(-0.6, 0.6) * L
    t = np.linspace(-0.5, 0.5, 200)
    d = np.array([np.sin(ang), np.cos(ang)])
    n = np.array([-d[1], d[0]])
    pts = (np.array([cy, cx])[None] + np.outer(t * L, d) + np.outer((1 - 4 * t ** 2) * bend * 0.5
                                                                    - bend * 0.25, n))
    img = np.zeros((S, S), np.float32)
    w = g * rng.uniform(0.25, 0.9)
    yy, xx = _grid(S)
    for p in pts[::4]:
        img = np.maximum(img, np.exp(-((yy - p[0]) ** 2 + (xx - p[1]) ** 2) / (2 * w * w)))
    img *= _texture(rng, S, rng.uniform(0.1, 0.4), 1.5)
    return img


def _negative(rng, S, c, g, kind):
    cy = cx = c
    yy, xx = _grid(S)
    if kind == "noise":
        R = g * rng.uniform(1.0, 4.0)
        img = rng.random((S, S)).astype(np.float32) ** rng.uniform(1, 4)
        img *= ((yy - cy) ** 2 + (xx - cx) ** 2 < R * R) & (rng.random((S, S)) < rng.uniform(0.2, 1))
        if rng.random() < 0.5:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9))
        return img
    if kind == "speck":
        s = g * rng.uniform(0.1, 0.3)
        img = np.exp(-((yy - cy - rng.uniform(-1, 1)) ** 2 + (xx - cx - rng.uniform(-1, 1)) ** 2)
                     / (2 * s * s))
        return img + 0.3 * rng.random((S, S)) * (rng.random((S, S)) < 0.05)
    if kind == "background":
        u = rng.random()
        if u < 0.35:
            sig = g * rng.uniform(3.5, 8)
            return np.exp(-0.5 * _rho(S, cy, cx, sig, sig * rng.uniform(0.6, 1.4),
                                      rng.uniform(0, np.pi)) ** 2)
        if u < 0.6:
            a = rng.uniform(0, 2 * np.pi)
            ramp = np.cos(a) * (yy - cy) + np.sin(a) * (xx - cx)
            return np.clip(ramp / S + rng.uniform(0.3, 1.0), 0, None)
        z = cv2.GaussianBlur(rng.standard_normal((S, S)).astype(np.float32), (0, 0),
                             g * rng.uniform(1.0, 3.0))
        return np.clip(z - np.percentile(z, rng.uniform(10, 60)), 0, None)
    if kind == "fragment":
        img = _cell(rng, S, cy, cx, g)
        if rng.random() < 0.5:
            a = rng.uniform(0, 2 * np.pi)
            off = g * rng.uniform(-0.3, 0.5)
            img = img * ((np.cos(a) * (yy - cy) + np.sin(a) * (xx - cx)) > off)
        else:
            r = g * rng.uniform(1.2, 2.2)
            ring = np.exp(-(np.hypot(yy - cy, xx - cx) - r) ** 2 / (2 * (0.3 * r) ** 2))
            ang = np.arctan2(yy - cy, xx - cx)
            a0, span = rng.uniform(-np.pi, np.pi), rng.uniform(0.6, 2.0)
            img = ring * (np.angle(np.exp(1j * (ang - a0))) % (2 * np.pi) < span)
        return img
    if kind == "double":
        d = g * rng.uniform(2.2, 4.5)
        a = rng.uniform(0, np.pi)
        dy, dx = 0.5 * d * np.sin(a), 0.5 * d * np.cos(a)
        r = rng.uniform(0.5, 1.0)
        return np.maximum(_cell(rng, S, cy + dy, cx + dx, g), r * _cell(rng, S, cy - dy, cx - dx, g))
    if kind == "vessel":
        return _curve(rng, S, cy, cx, g)
    # offcentre: a cell and a comparable diffuse mass on one side
    a = rng.uniform(0, 2 * np.pi)
    d = g * rng.uniform(2.0, 3.5)
    img = _cell(rng, S, cy, cx, g)
    cloud = np.exp(-0.5 * _rho(S, cy + d * np.sin(a), cx + d * np.cos(a), g * 1.5, g * 2.5,
                               rng.uniform(0, np.pi)) ** 2)
    cloud *= rng.random((S, S)) * rng.uniform(0.5, 1.2)
    return np.maximum(img, cloud.astype(np.float32))


def _augment(rng, img, S, c, g, *, positive):
    img = np.asarray(img, np.float32)
    img = img / max(float(img.max()), 1e-9)
    if positive and rng.random() < 0.3:                    # uneven brightness (lopsided soma)
        yy, xx = _grid(S)
        ang = np.arctan2(yy - c, xx - c)
        img = img * (1 + rng.uniform(0.2, 0.7) * np.cos(ang - rng.uniform(0, 2 * np.pi)))
    if positive and rng.random() < 0.2:                    # square pedestal of background
        h = int(round(g * rng.uniform(2.0, 3.5)))
        ci = int(round(c))
        ped = np.zeros_like(img)
        ped[max(0, ci - h):ci + h + 1, max(0, ci - h):ci + h + 1] = rng.uniform(0.05, 0.25)
        img = np.maximum(img, ped * (0.7 + 0.6 * rng.random((S, S))).astype(np.float32))
    if positive and rng.random() < 0.5:                    # weak neighbours leaking in
        for _ in range(rng.integers(1, 4)):
            a, d = rng.uniform(0, 2 * np.pi), g * rng.uniform(2.0, 4.0)
            nb = _cell(rng, S, c + d * np.sin(a), c + d * np.cos(a), g)
            img = np.maximum(img, rng.uniform(0.05, 0.35) * nb)
    if rng.random() < 0.3:                                 # grid / stripe texture (engine-like)
        yy, xx = _grid(S)
        per = rng.uniform(2.0, 4.0)
        ph = rng.uniform(0, 2 * np.pi, 2)
        amp = rng.uniform(0.2, 0.7)
        tex = 1 + amp * np.sin(2 * np.pi * xx / per + ph[0])
        if rng.random() < 0.5:
            tex = tex * (1 + amp * np.sin(2 * np.pi * yy / per + ph[1]))
        img = img * np.clip(tex, 0, None)
    if rng.random() < 0.25:                                # grainy multiplicative noise
        img = img * np.clip(1 + rng.uniform(0.2, 0.8) * rng.standard_normal((S, S)), 0, None)
    if rng.random() < 0.5:                                 # additive positive noise
        img = img + rng.uniform(0, 0.15) * rng.random((S, S)).astype(np.float32) * (img > 0)
    if rng.random() < 0.5:                                 # sparse support
        img = np.where(img >= rng.uniform(0, 0.25) * img.max(), img, 0)
    if rng.random() < 0.4:                                 # truncation to the search box
        h = int(round(g * rng.uniform(2.0, 4.0)))
        ci = int(round(c))
        box = np.zeros_like(img)
        box[max(0, ci - h):ci + h + 1, max(0, ci - h):ci + h + 1] = 1
        img = img * box
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.5:
        img = img[::-1] if rng.random() < 0.5 else img[:, ::-1]
    return np.ascontiguousarray(img, dtype=np.float32)


def make_dataset(n: int, *, seed: int, pos_frac: float = 0.5, g_range=(2.0, 8.0),
                 size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``n`` labelled crops.

    Parameters
    ----------
    n : int
        Number of samples.
    seed : int
        Random seed (use different seeds for training and held-out data).
    pos_frac : float
        Fraction of positives.
    g_range : (float, float)
        Range of the nominal neuron radius ``g`` in pixels.
    size : int
        Crop side length.

    Returns
    -------
    crops : ndarray, shape (n, size, size), float32 in [0, 1]
    labels : ndarray, shape (n,), int8 (1 = neuron)
    kinds : ndarray, shape (n,), str (``"cell"`` or one of :data:`NEGATIVE_KINDS`)
    """
    rng = np.random.default_rng(seed)
    crops = np.zeros((n, size, size), np.float32)
    labels = (rng.random(n) < pos_frac).astype(np.int8)
    kinds = np.empty(n, dtype=object)
    for i in range(n):
        g = float(rng.uniform(*g_range))
        S = int(np.ceil(2 * (CROP_SCALE + 1.5) * g)) + 4
        c = (S - 1) / 2.0 + rng.uniform(-1, 1)
        if labels[i]:
            img, kinds[i] = _cell(rng, S, c, c, g), "cell"
        else:
            kinds[i] = NEGATIVE_KINDS[rng.integers(len(NEGATIVE_KINDS))]
            img = _negative(rng, S, c, g, kinds[i])
        img = _augment(rng, img, S, c, g, positive=bool(labels[i]))
        crops[i] = crop_image(img, gSig=g * rng.uniform(0.85, 1.15), size=size)
    return crops, labels, kinds.astype(str)
