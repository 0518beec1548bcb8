"""Simulated brain motion and its application to frames.

Convention (the project's *registration* convention, CaImAn's ``shifts_rig``):
``shift = (dy, dx)`` of frame ``t`` is the translation that **registers** the raw frame,
i.e. translating raw frame ``t`` by ``(dy, dx)`` (content moves down by ``dy`` and right
by ``dx``) gives back the unmoved frame::

    registered(y, x) = raw(y - dy, x - dx) = unmoved(y, x)
    raw(y, x)        = unmoved(y + dy, x + dx)

The simulator renders the unmoved scene on a canvas with a margin ``m`` on each side and
samples ``raw(y, x) = canvas(y + m + dy, x + m + dx)`` with bicubic interpolation, so no
border artefact appears. Piecewise-rigid motion uses a smooth field ``(dy, dx)(y, x)``
in the same convention, defined at raw-frame pixels.

The coarse field ``shift_field[t]`` has shape ``(2, gh, gw)``; node ``(i, j)`` sits at
pixel ``((i + 0.5) * H / gh - 0.5, (j + 0.5) * W / gw - 0.5)`` and the dense field is
its bicubic interpolation (``cv2.resize(..., INTER_CUBIC)``, see :func:`dense_field`).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from cellextract.simulate.traces import ou_process

__all__ = ["rigid_trajectory", "deformation_field", "dense_field", "field_at", "warp_frame",
           "register_rigid", "motion_margin"]


def motion_margin(max_shift: float) -> int:
    """Canvas margin (px) needed for shifts up to ``max_shift`` plus cubic support."""
    return int(np.ceil(max_shift)) + 3 if max_shift > 0 else 0


def rigid_trajectory(rng: np.random.Generator, T: int, fr: float, max_shift: float) -> np.ndarray:
    """Rigid registration shifts: slow random walk + movement events + jitter.

    The slow part is an Ornstein-Uhlenbeck process (3 s correlation time) plus a small
    drift; movement events are smooth bumps lasting 0.5-3 s (one per ~20 s); the sum is
    soft-limited with ``L * tanh(u / L)`` and a sub-pixel frame-to-frame jitter is added.
    Every value lies within ``[-max_shift, max_shift]``.

    Returns
    -------
    shifts : ndarray, shape (T, 2), float32, ``(dy, dx)`` px, registration convention.
    """
    L = float(max_shift)
    if L <= 0:
        return np.zeros((T, 2), np.float32)
    slow = 0.35 * ou_process(rng, 2, T, tau_frames=3.0 * fr).T
    slow += np.linspace(0, 1, T)[:, None] * rng.normal(0.0, 0.2, 2)
    n_ev = rng.poisson(max(T / fr / 20.0, 0.5))
    for _ in range(n_ev):
        t0 = rng.integers(0, T)
        d = max(2, int(rng.uniform(0.5, 3.0) * fr))
        bump = np.hanning(d)
        t1 = min(T, t0 + d)
        slow[t0:t1] += bump[: t1 - t0, None] * rng.normal(0.0, 0.6, 2)
    u = L * np.tanh(slow)
    jitter = rng.normal(0.0, min(0.15, 0.05 * L), (T, 2))
    return np.clip(u + jitter, -L, L).astype(np.float32)


def deformation_field(rng: np.random.Generator, T: int, fr: float, *, grid: tuple[int, int],
                      amplitude: float) -> np.ndarray:
    """Low-frequency non-rigid part: zero spatial mean, slow in time.

    Returns
    -------
    field : ndarray, shape (T, 2, gh, gw), float32, px, each value within
        ``±2 * amplitude`` (typically within ``±amplitude``).
    """
    gh, gw = grid
    n = 2 * gh * gw
    x = ou_process(rng, n, T, tau_frames=rng.uniform(3.0, 10.0, n) * fr)
    x = x.T.reshape(T, 2, gh, gw)
    x -= x.mean(axis=(2, 3), keepdims=True)
    x = amplitude * np.tanh(0.5 * x)
    x -= x.mean(axis=(2, 3), keepdims=True)
    return x.astype(np.float32)


@lru_cache(maxsize=16)
def _cubic_matrix(n_out: int, n_in: int) -> np.ndarray:
    """1-D bicubic upsampling matrix (n_out, n_in) equal to ``cv2.resize(INTER_CUBIC)``."""
    eye = np.eye(n_in, dtype=np.float32)
    return np.stack([cv2.resize(np.repeat(eye[:, i:i + 1], 2, 1), (2, n_out),
                                interpolation=cv2.INTER_CUBIC)[:, 0] for i in range(n_in)], 1)


def dense_field(field: np.ndarray, dims: tuple[int, int]) -> np.ndarray:
    """Per-pixel shift field from a coarse one by bicubic interpolation.

    The interpolation is OpenCV's bicubic resize (``cv2.resize(f, (W, H),
    interpolation=cv2.INTER_CUBIC)``), applied separably as ``Ry @ f @ Rx.T``.

    Parameters
    ----------
    field : ndarray, shape (2, gh, gw)
    dims : (H, W)

    Returns
    -------
    dense : ndarray, shape (2, H, W), float32.
    """
    H, W = dims
    f = np.asarray(field, np.float32)
    Ry, Rx = _cubic_matrix(H, f.shape[1]), _cubic_matrix(W, f.shape[2])
    return np.stack([Ry @ fi @ Rx.T for fi in f]).astype(np.float32)


def field_at(shift_field: np.ndarray, dims: tuple[int, int], ys, xs) -> np.ndarray:
    """True registration shifts at given pixels for every frame.

    Parameters
    ----------
    shift_field : ndarray, shape (T, 2, gh, gw)
        Coarse field (``Truth.shift_field``).
    dims : (H, W)
    ys, xs : array-like, shape (n,)
        Pixel positions (rounded to the nearest pixel), e.g. patch centers.

    Returns
    -------
    shifts : ndarray, shape (T, 2, n), float32, equal to ``dense_field(field[t])[:, y, x]``.
    """
    H, W = dims
    f = np.asarray(shift_field, np.float32)
    yi = np.clip(np.rint(np.asarray(ys, float)).astype(int), 0, H - 1)
    xi = np.clip(np.rint(np.asarray(xs, float)).astype(int), 0, W - 1)
    Ry = _cubic_matrix(H, f.shape[2])[yi]
    Rx = _cubic_matrix(W, f.shape[3])[xi]
    return np.einsum("ni,taij,nj->tan", Ry, f, Rx).astype(np.float32)


@lru_cache(maxsize=4)
def _grid(H: int, W: int):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def warp_frame(canvas_frame: np.ndarray, dims: tuple[int, int], margin: int, *,
               shift=None, field=None) -> np.ndarray:
    """Sample a raw frame from a canvas frame.

    Parameters
    ----------
    canvas_frame : ndarray, shape (H + 2m, W + 2m), float32
    dims : (H, W)
    margin : int
    shift : (dy, dx), optional
        Rigid registration shift of this frame.
    field : ndarray, shape (2, H, W), optional
        Dense registration shift field (overrides ``shift``).

    Returns
    -------
    frame : ndarray, shape (H, W), float32, ``raw(y, x) = canvas(y+m+dy, x+m+dx)``.
    """
    H, W = dims
    if field is not None:
        yy, xx = _grid(H, W)
        return cv2.remap(canvas_frame, xx + margin + field[1], yy + margin + field[0],
                         interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    dy, dx = (0.0, 0.0) if shift is None else (float(shift[0]), float(shift[1]))
    if margin == 0 and dy == 0 and dx == 0:
        return np.ascontiguousarray(canvas_frame[:H, :W])
    M = np.array([[1.0, 0.0, margin + dx], [0.0, 1.0, margin + dy]])
    return cv2.warpAffine(canvas_frame, M, (W, H), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def register_rigid(frame: np.ndarray, shift) -> np.ndarray:
    """Apply a registration shift ``(dy, dx)``: ``out(y, x) = frame(y - dy, x - dx)``.

    Reference implementation of the convention (used by tests and benchmarks).
    """
    H, W = frame.shape
    M = np.array([[1.0, 0.0, float(shift[1])], [0.0, 1.0, float(shift[0])]])
    return cv2.warpAffine(np.asarray(frame, np.float32), M, (W, H), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)
