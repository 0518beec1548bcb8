"""Background, optics and tissue artefacts for the simulator.

The background is a sum of spatial maps times temporal factors,
``B (P, m) @ F (m, T)``, rendered on the canvas (tissue coordinates, so it moves with
the brain):

* column 0: the static mean background (smooth, with neuropil texture) times a slow
  photobleaching factor;
* a few low-rank smooth modes with slow Ornstein-Uhlenbeck dynamics (seconds to tens
  of seconds);
* out-of-focus "neuropil blobs": wide Gaussians (sigma 8-22 px) each with its own
  calcium-like activity (Poisson spikes through a slow AR(1) kernel).

Blood vessels are a multiplicative *transmission* map (tissue coordinates) and
vignetting a multiplicative map in camera coordinates.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.signal import lfilter

from cellextract.simulate.traces import ou_process

__all__ = ["smooth_field", "vignette", "vessel_transmission", "background_model"]

# Per-kind background settings (levels in counts / photons per pixel per frame).
KIND_BACKGROUND = {
    "1p": dict(level=850.0, mean_var=0.25, texture=0.04, modes=(0.08, 0.05, 0.02),
               mode_tau_s=(40.0, 10.0, 1.5), blob_density=1 / 1600.0,
               blob_amp=(0.04, 0.22), blob_sigma=(8.0, 22.0), bleach=0.12,
               n_vessels=3, vessel_width=(5.0, 14.0), vessel_depth=(0.3, 0.6),
               vignette=0.45),
    "2p": dict(level=40.0, mean_var=0.2, texture=0.15, modes=(0.06, 0.03),
               mode_tau_s=(30.0, 5.0), blob_density=1 / 3000.0,
               blob_amp=(0.03, 0.15), blob_sigma=(10.0, 25.0), bleach=0.05,
               n_vessels=1, vessel_width=(3.0, 7.0), vessel_depth=(0.5, 0.8),
               vignette=0.15),
}


def smooth_field(rng: np.random.Generator, dims: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with correlation length ``scale`` px.

    Returns
    -------
    field : ndarray, shape dims, float32.
    """
    z = rng.standard_normal(dims).astype(np.float32)
    z = cv2.GaussianBlur(z, (0, 0), float(scale), borderType=cv2.BORDER_REFLECT)
    z -= z.mean()
    return z / max(float(z.std()), 1e-9)


def vignette(dims: tuple[int, int], strength: float) -> np.ndarray:
    """Radial illumination falloff: 1 at the center, ``1 - strength`` at the corners.

    Returns
    -------
    v : ndarray, shape dims, float32.
    """
    H, W = dims
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((yy - (H - 1) / 2) ** 2 + (xx - (W - 1) / 2) ** 2) / (((H - 1) / 2) ** 2 + ((W - 1) / 2) ** 2 + 1e-9)
    return (1.0 - strength * r2).astype(np.float32)


def _vessel_path(rng: np.random.Generator, start, ang: float, n: int, *,
                 both: bool) -> np.ndarray:
    """A smooth random curve of ``n`` unit steps (each way if ``both``), (N, 2) (x, y)."""
    curv = lfilter([0.1], [1.0, -0.9], rng.normal(0.0, 0.02, 2 * n))
    angles = ang + np.cumsum(curv)
    dirs = np.stack([np.cos(angles), np.sin(angles)], 1)
    fwd = np.asarray(start, float) + np.cumsum(dirs[n:], 0)
    if not both:
        return fwd
    bwd = np.asarray(start, float) - np.cumsum(dirs[:n][::-1], 0)
    return np.concatenate([bwd[::-1], fwd])


def _draw_vessel(dims, pts: np.ndarray, w: float) -> np.ndarray:
    """Blurred, anti-aliased stroke of width ``w`` px along ``pts``, peak 1."""
    img = np.zeros(dims, np.float32)
    cv2.polylines(img, [np.round(pts * 16).astype(np.int32)], False, 1.0,
                  thickness=max(1, int(round(w))), lineType=cv2.LINE_AA, shift=4)
    img = cv2.GaussianBlur(img, (0, 0), max(0.8, w / 3))
    return img / max(float(img.max()), 1e-9)


def vessel_transmission(rng: np.random.Generator, dims: tuple[int, int], *, n: int,
                        width=(4.0, 10.0), depth=(0.3, 0.55)) -> np.ndarray:
    """Multiplicative transmission map with ``n`` dark, curved, branching blood vessels.

    Each vessel crosses the field along a smooth random curve, with 0-2 thinner
    branches leaving it at 30-80 degrees; strokes are blurred (out of focus).

    Returns
    -------
    tau : ndarray, shape dims, float32, in (0, 1].
    """
    H, W = dims
    tau = np.ones(dims, np.float32)
    size = int(np.hypot(H, W))
    for _ in range(n):
        start = np.array([rng.uniform(0, W), rng.uniform(0, H)])
        pts = _vessel_path(rng, start, rng.uniform(0, 2 * np.pi), size, both=True)
        w = rng.uniform(*width)
        d = rng.uniform(*depth)
        tau *= 1.0 - d * _draw_vessel(dims, pts, w)
        for _b in range(rng.integers(0, 3)):
            p0 = pts[rng.integers(size // 2, 3 * size // 2)]
            seg = pts[min(len(pts) - 1, size)] - pts[size - 1]
            ang = np.arctan2(seg[1], seg[0]) + rng.choice([-1, 1]) * np.deg2rad(rng.uniform(30, 80))
            br = _vessel_path(rng, p0, ang, int(rng.uniform(0.2, 0.5) * size), both=False)
            tau *= 1.0 - d * rng.uniform(0.6, 1.0) * _draw_vessel(dims, br, w * rng.uniform(0.4, 0.7))
    return tau


def _blob_activity(rng: np.random.Generator, n: int, T: int, fr: float) -> np.ndarray:
    """Calcium-like activity of out-of-focus blobs, (n, T), peak-normalised."""
    out = np.empty((n, T), np.float32)
    for j in range(n):
        rate = rng.uniform(0.3, 3.0)
        s = rng.poisson(rate / fr, T).astype(float)
        a = np.exp(-1.0 / (rng.uniform(0.6, 1.5) * fr))
        c = lfilter([1.0], [1.0, -a], s)
        out[j] = c / max(np.percentile(c, 99.5), 1e-9)
    return out


def _gaussian_column(canvas, cy, cx, sig) -> sp.csc_matrix:
    """A Gaussian blob truncated at 3.5 sigma as a sparse (Hc*Wc, 1) column."""
    Hc, Wc = canvas
    y0, y1 = max(0, int(cy - 3.5 * sig[0])), min(Hc, int(cy + 3.5 * sig[0]) + 1)
    x0, x1 = max(0, int(cx - 3.5 * sig[1])), min(Wc, int(cx + 3.5 * sig[1]) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    g = np.exp(-0.5 * (((yy - cy) / sig[0]) ** 2 + ((xx - cx) / sig[1]) ** 2))
    idx = (yy.astype(np.int64) * Wc + xx.astype(np.int64)).ravel()
    return sp.csc_matrix((g.ravel(), (idx, np.zeros(idx.size, int))), shape=(Hc * Wc, 1))


def background_model(rng: np.random.Generator, kind: str, canvas: tuple[int, int], T: int,
                     fr: float, *, scale: float = 1.0):
    """Spatial maps and temporal factors of the background.

    Parameters
    ----------
    kind : {'1p', '2p'}
    canvas : (Hc, Wc)
        Canvas size (tissue coordinates), px.
    T : int
        Frames.
    fr : float
        Frame rate, Hz.
    scale : float
        Multiplies the background level.

    Returns
    -------
    B : scipy.sparse.csc_matrix, shape (Hc*Wc, m), float32, C-order pixels (dense
        columns for the mean and the modes, truncated Gaussians for the blobs).
    F : ndarray, shape (m, T), float32.
    """
    cfg = KIND_BACKGROUND[kind]
    Hc, Wc = canvas
    level = cfg["level"] * scale
    size = min(Hc, Wc)
    mean = 1.0 + cfg["mean_var"] * smooth_field(rng, canvas, 0.2 * size)
    mean *= 1.0 + cfg["texture"] * smooth_field(rng, canvas, 2.0)
    maps = [np.clip(mean, 0.3, None) * level]
    t = np.arange(T) / fr
    dur = max(T / fr, 1.0)
    facts = [1.0 - cfg["bleach"] * (1.0 - np.exp(-t / (0.6 * dur)))]
    taus = np.asarray(cfg["mode_tau_s"]) * fr
    ou = ou_process(rng, len(cfg["modes"]), T, tau_frames=taus)
    for amp, f in zip(cfg["modes"], ou):
        phi = np.exp(0.6 * smooth_field(rng, canvas, 0.15 * size))
        maps.append(phi / phi.mean() * amp * level)
        facts.append(f)
    n_blob = max(1, int(round(cfg["blob_density"] * Hc * Wc)))
    act = _blob_activity(rng, n_blob, T, fr)
    cols = [sp.csc_matrix(np.stack([m.ravel() for m in maps], 1).astype(np.float32))]
    for j in range(n_blob):
        cy, cx = rng.uniform(0, Hc), rng.uniform(0, Wc)
        sig = rng.uniform(*cfg["blob_sigma"]) * np.array([rng.uniform(0.8, 1.25), 1.0])
        cols.append(_gaussian_column(canvas, cy, cx, sig) * rng.uniform(*cfg["blob_amp"]) * level)
        facts.append(act[j])
    B = sp.hstack(cols, format="csc").astype(np.float32)
    F = np.stack(facts, 0).astype(np.float32)
    return B, F
