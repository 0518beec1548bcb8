"""Piecewise-rigid registration (NoRMCorre): patch shifts and a smooth shift field.

The field of view is covered by overlapping square-ish patches of ``strides + overlaps``
pixels placed every ``strides`` pixels, the last patch of each axis snapped to the image
edge. Each patch of a raw frame is registered to the same patch of the template with the
search restricted to ``rigid shift ± max_deviation_rigid`` (all patches of all frames of a
batch in one FFT and one refinement). The patch shifts, attached to the patch centres, are
interpolated by a natural cubic spline (constant beyond the outermost centres) into a
smooth full-resolution field, applied with ``cv2.remap`` (bicubic). The spline is the
continuous limit of CaImAn's ``upsample_factor_grid`` refinement of the patch grid.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.fft as sfft
from scipy.interpolate import CubicSpline

from cellextract.motion.apply import apply_field
from cellextract.motion.filters import highpass
from cellextract.motion.register import (
    image_spectra,
    register_spectra,
    taper,
    tukey_window,
)

#: Frequency bands (|f| <= band / 2 cycles/px, see :func:`register_spectra`) of the integer
#: patch search and of the sub-pixel stage. Half band: 4x less work, and on the simulator the
#: same field error on 1P (0.086 px) and lower on 2P (0.080 vs 0.084 px: the dropped band is
#: mostly noise, the template patches carry < 0.3 % of their energy there).
COARSE_BAND = 0.5
FINE_BAND = 0.5
#: ``decimate=None`` registers on the 2x decimated lattice when the template patches carry
#: less than this fraction of their energy above 1/4 cycle/px (high-pass filtered 1P
#: templates: ~1e-4; unfiltered 2P: ~3e-3, where decimation costs ~4 % field error).
DECIMATE_MAX_HIGH = 1e-3


def _starts(n: int, size: int, stride: int) -> np.ndarray:
    if size >= n:
        return np.array([0])
    s = list(range(0, n - size + 1, stride))
    if s[-1] != n - size:
        s.append(n - size)
    return np.array(s)


@dataclass(frozen=True)
class PatchGrid:
    """Patch layout.

    Attributes
    ----------
    starts_y, starts_x : np.ndarray
        ``(gy,)``, ``(gx,)`` first row / column of each patch.
    size : (int, int)
        Patch size ``(py, px)`` in pixels.
    dims : (int, int)
        Frame size ``(H, W)``.
    """

    starts_y: np.ndarray
    starts_x: np.ndarray
    size: tuple[int, int]
    dims: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """``(gy, gx)`` number of patches along rows and columns."""
        return (self.starts_y.size, self.starts_x.size)

    @property
    def centers_y(self) -> np.ndarray:
        """``(gy,)`` patch centre rows (pixels)."""
        return self.starts_y + (self.size[0] - 1) / 2.0

    @property
    def centers_x(self) -> np.ndarray:
        """``(gx,)`` patch centre columns (pixels)."""
        return self.starts_x + (self.size[1] - 1) / 2.0


def patch_grid(dims, *, strides=(48, 48), overlaps=(24, 24)) -> PatchGrid:
    """Patches of ``strides + overlaps`` px every ``strides`` px, last one snapped to the edge.

    Parameters
    ----------
    dims : (int, int)
        Frame size ``(H, W)``.
    strides, overlaps : (int, int)
        Pixels between patch starts and extra overlap, per axis.

    Returns
    -------
    PatchGrid
    """
    H, W = int(dims[0]), int(dims[1])
    py = min(H, int(strides[0]) + int(overlaps[0]))
    px = min(W, int(strides[1]) + int(overlaps[1]))
    return PatchGrid(_starts(H, py, int(strides[0])), _starts(W, px, int(strides[1])), (py, px), (H, W))


def extract_patches(images: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Cut ``(n, H, W)`` images into ``(n, gy, gx, py, px)`` patches (a copy)."""
    py, px = grid.size
    out = np.empty((images.shape[0], grid.starts_y.size, grid.starts_x.size, py, px), dtype=images.dtype)
    for i, y0 in enumerate(grid.starts_y):
        for j, x0 in enumerate(grid.starts_x):
            out[:, i, j] = images[:, y0:y0 + py, x0:x0 + px]
    return out


def template_patch_spectra(template: np.ndarray, grid: PatchGrid, *, gSig_filt=None) -> np.ndarray:
    """Spectra ``(gy, gx, py, px//2+1)`` of the tapered template patches (filtered as the frames)."""
    t = np.asarray(template, dtype=np.float32)
    if gSig_filt is not None:
        t = highpass(t, gSig_filt)
    return image_spectra(taper(extract_patches(t[None], grid)[0], tukey_window(grid.size, 0.5)))


def patch_shifts(frames: np.ndarray, tmpl_spectra: np.ndarray, grid: PatchGrid, rigid: np.ndarray, *,
                 max_deviation_rigid=3, gSig_filt=None, upsample: int = 10,
                 coarse_band: float = COARSE_BAND, band: float = FINE_BAND,
                 decimate: int | None = None) -> np.ndarray:
    """Per-patch registration shifts bounded around the rigid shifts.

    Each raw-frame patch is cut at the template patch position moved by the rounded rigid
    shift of its frame (kept inside the frame), so it holds nearly the same content as the
    template patch and only the patch's deviation from the rigid shift is measured; template
    patches are mean-subtracted and Tukey-tapered, which keeps the correlation free of
    wrap-around bias for deviations of a few pixels (a second pass re-cut at each patch's own
    rounded estimate changes the shifts by < 0.003 px RMS on the simulator, at 1.5x the cost).
    All patches of all frames are cut in one gather, transformed in one ``rfft2`` and refined
    in one :func:`register_spectra` call.

    Parameters
    ----------
    frames : np.ndarray
        ``(n, H, W)`` raw frames.
    tmpl_spectra : np.ndarray
        ``(gy, gx, py, px//2+1)`` from :func:`template_patch_spectra` (same ``gSig_filt``).
    grid : PatchGrid
        Patch layout.
    rigid : np.ndarray
        ``(n, 2)`` rigid shifts of the frames (pixels).
    max_deviation_rigid : int or (int, int)
        Largest |patch shift - rigid shift| in pixels.
    gSig_filt : float, pair or None
        High-pass width (frames are filtered whole, then cut).
    upsample : int
        Sub-pixel factor.
    coarse_band, band : float
        Frequency bands of the integer search and of the sub-pixel stage
        (:func:`register_spectra`).
    decimate : {None, 1, 2}
        2: register on a 2x coarser lattice (frames averaged over 2 x 2 blocks, whose
        centres sit half a pixel off the even pixels, corrected exactly; half-band template
        spectra; sub-pixel factor doubled) instead of cutting the half
        band out of full-size patch spectra: 4x less cutting and FFT work. On the 512 px
        simulations the field error is then 0.086 / 0.083 px (1P / 2P, 120 frames) vs
        0.086 / 0.080 with 1 (former two-pass full-band search: 0.086 / 0.084), so
        None (default) picks 2 only for smooth templates (high-pass filtered 1P, see
        ``DECIMATE_MAX_HIGH``). Odd patch sizes or patches under 32 px always use 1.

    Returns
    -------
    np.ndarray
        ``(n, gy, gx, 2)`` float32 shifts ``(shift_y, shift_x)`` in pixels.
    """
    a = np.asarray(frames, dtype=np.float32)
    if gSig_filt is not None:
        a = highpass(a, gSig_filt)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    n = a.shape[0]
    gy, gx = grid.shape
    py, px = grid.size
    rigid = np.asarray(rigid, dtype=np.float64).reshape(n, 2)
    dev = np.broadcast_to(np.asarray(max_deviation_rigid, dtype=np.float64).reshape(-1), (2,))
    if decimate is None:
        decimate = 2 if _high_band_fraction(tmpl_spectra, (py, px)) < DECIMATE_MAX_HIGH else 1
    q = 2 if decimate == 2 and py % 2 == 0 and px % 2 == 0 and min(py, px) >= 32 else 1
    if q == 2:  # the half band on a 2x coarser lattice: 2 x 2 block means (centred at 2i + 1/2)
        H, W = a.shape[1:]
        a = np.stack([cv2.resize(f, (W // 2, H // 2), interpolation=cv2.INTER_AREA) for f in a])
        grid_q = PatchGrid(grid.starts_y, grid.starts_x, (py // 2, px // 2), grid.dims)
        patches, e = _cut_frames(a, grid_q, rigid, step=2)
        tmf = _half_band(tmpl_spectra, (py, px))
        coarse_band = band = 1.0
        upsample = 2 * int(upsample)  # same sub-pixel step in frame pixels
    else:
        patches, e = _cut_frames(a, grid, rigid)  # (n, gy, gx, py, px), (n, gy, gx, 2)
        tmf = tmpl_spectra
    spec = sfft.rfft2(patches, axes=(-2, -1), workers=1)
    del patches
    np.conjugate(spec, out=spec)
    spec *= tmf  # broadcast over frames: cross-power spectra T * conj(F)
    e = e.reshape(-1, 2)
    r = np.repeat(rigid, gy * gx, axis=0)
    hq, wq = py // q, px // q
    lim = np.array([hq // 2 - 1, wq // 2 - 1], dtype=np.float64)
    # block-mean sample i is frame position 2 i + 1/2: full shift = q * s + e - off
    off = 0.5 if q == 2 else 0.0
    lo = np.clip((r - dev - e + off) / q, -lim, lim)
    hi = np.maximum(np.clip((r + dev - e + off) / q, -lim, lim), lo)
    s = register_spectra(spec.reshape((n * gy * gx,) + spec.shape[-2:]), None, (hq, wq), lo=lo, hi=hi,
                         upsample=upsample, coarse_band=coarse_band, band=band)
    s = s.astype(np.float64) * q - off
    return (s + e).reshape(n, gy, gx, 2).astype(np.float32)


def _cut_frames(a: np.ndarray, grid: PatchGrid, guess: np.ndarray, *, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All patches of frames ``a`` cut at the grid positions moved by ``round(guess)``.

    Parameters
    ----------
    a : np.ndarray
        ``(n, H, W)`` frames.
    grid : PatchGrid
        Patch layout.
    guess : np.ndarray
        ``(n, 2)`` per-frame shift estimates (pixels).
    step : int
        Pixel pitch of ``a`` relative to the grid (2: ``a`` is a 2x decimated frame, its
        pixel ``i`` at frame pixel ``2 i``; ``grid.size`` is then the decimated patch size
        and patches start at even frame pixels).

    Returns
    -------
    patches : np.ndarray
        ``(n, gy, gx, py, px)`` float32 copy (one vectorised gather).
    eff : np.ndarray
        ``(n, gy, gx, 2)`` float64 integer offsets actually used (patches are kept inside
        the frame, so edge patches may move less than ``round(guess)``).
    """
    py, px = grid.size
    n = a.shape[0]
    Hq, Wq = a.shape[1], a.shape[2]
    g = np.round(np.asarray(guess, dtype=np.float64).reshape(n, 2)).astype(np.int64)
    sy = np.clip((grid.starts_y[None, :] - g[:, 0:1]) // step, 0, Hq - py)  # (n, gy), units of a
    sx = np.clip((grid.starts_x[None, :] - g[:, 1:2]) // step, 0, Wq - px)  # (n, gx)
    win = np.lib.stride_tricks.sliding_window_view(a, (py, px), axis=(1, 2))  # (n, Hq-py+1, Wq-px+1, py, px)
    out = win[np.arange(n)[:, None, None], sy[:, :, None], sx[:, None, :]]
    ey, ex = np.broadcast_arrays((grid.starts_y[None, :] - step * sy)[:, :, None],
                                 (grid.starts_x[None, :] - step * sx)[:, None, :])
    return out, np.stack([ey, ex], axis=-1).astype(np.float64)


_HIGH_CACHE: dict = {}


def _high_band_fraction(spec: np.ndarray, shape: tuple[int, int]) -> float:
    """Fraction of the energy of rfft spectra ``(..., h, w//2+1)`` above 1/4 cycle/px on either axis.

    Cached per array object (the template spectra of a run are passed with every batch).
    """
    hit = _HIGH_CACHE.get(id(spec))
    if hit is not None and hit[0]() is spec and hit[1] == tuple(shape):
        return hit[2]
    frac = _high_band_fraction_uncached(spec, shape)
    if len(_HIGH_CACHE) > 8:
        _HIGH_CACHE.clear()
    _HIGH_CACHE[id(spec)] = (weakref.ref(spec), tuple(shape), frac)
    return frac


def _high_band_fraction_uncached(spec: np.ndarray, shape: tuple[int, int]) -> float:
    h, w = shape
    fy = np.abs(sfft.fftfreq(h))[:, None]
    fx = sfft.rfftfreq(w)[None, :]
    wx = np.where((fx == 0) | ((w % 2 == 0) & (fx == 0.5)), 1.0, 2.0)  # Hermitian weights
    p = (np.abs(spec.reshape((-1,) + spec.shape[-2:])) ** 2).sum(axis=0, dtype=np.float64) * wx
    tot = p.sum()
    return float(p[(fy > 0.25) | (fx > 0.25)].sum() / tot) if tot > 0 else 0.0


def _half_band(spec: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Spectra on the 2x coarser lattice from full ones (rfft layout), high band dropped.

    ``(..., h, w//2+1)`` -> ``(..., h/2, w/4+1)`` for even ``h, w``: the frequencies with
    ``|f| <= 1/4`` cycles/px (the Nyquist row of the small grid takes the mean of the two
    that alias onto it); equals the spectrum of the ideally low-passed, 2x subsampled
    image up to a constant factor.
    """
    h, w = shape
    hq, wq = h // 2, w // 2
    j = np.arange(hq)
    fj = np.where(j <= hq // 2, j, j - hq)  # signed row frequency, same index on the full grid
    cols = slice(0, wq // 2 + 1)
    out = spec[..., fj % h, cols].astype(np.complex64)
    if hq % 2 == 0:  # both +-hq/2 alias onto the small grid's Nyquist row
        out[..., hq // 2, :] = 0.5 * (spec[..., hq // 2, cols] + spec[..., h - hq // 2, cols])
    return out


def _weights(centers: np.ndarray, n: int) -> np.ndarray:
    """``(n, g)`` natural-cubic-spline weights from values at ``centers`` to pixels 0..n-1."""
    g = centers.size
    if g == 1:
        return np.ones((n, 1), np.float32)
    x = np.clip(np.arange(n, dtype=np.float64), centers[0], centers[-1])
    if g == 2:
        return np.stack([(centers[1] - x), (x - centers[0])], axis=1).astype(np.float32) / float(centers[1] - centers[0])
    return CubicSpline(centers, np.eye(g), bc_type="natural")(x).astype(np.float32)


def shift_field(pshifts: np.ndarray, grid: PatchGrid) -> tuple[np.ndarray, np.ndarray]:
    """Smooth full-resolution field from patch shifts.

    Parameters
    ----------
    pshifts : np.ndarray
        ``(n, gy, gx, 2)`` or ``(gy, gx, 2)`` patch shifts (pixels).
    grid : PatchGrid
        Patch layout.

    Returns
    -------
    field_y, field_x : np.ndarray
        ``(n, H, W)`` (or ``(H, W)``) float32 shift at every pixel (pixels).
    """
    p = np.asarray(pshifts, dtype=np.float32)
    single = p.ndim == 3
    if single:
        p = p[None]
    H, W = grid.dims
    wy = _weights(grid.centers_y, H)  # (H, gy)
    wxT = np.ascontiguousarray(_weights(grid.centers_x, W).T)  # (gx, W)
    fy = np.matmul(np.matmul(wy, p[..., 0]), wxT)
    fx = np.matmul(np.matmul(wy, p[..., 1]), wxT)
    return (fy[0], fx[0]) if single else (fy, fx)


def apply_piecewise(frames: np.ndarray, pshifts: np.ndarray, grid: PatchGrid, *, border_nan="copy",
                    out: np.ndarray | None = None) -> np.ndarray:
    """Warp frames by the smooth fields of their patch shifts.

    Parameters
    ----------
    frames : np.ndarray
        ``(n, H, W)`` raw frames.
    pshifts : np.ndarray
        ``(n, gy, gx, 2)`` patch shifts.
    grid : PatchGrid
        Patch layout.
    border_nan : {True, False, 'copy', 'min'}
        Fill of pixels with no source.
    out : np.ndarray, optional
        ``(n, H, W)`` float32 output.

    Returns
    -------
    np.ndarray
        ``(n, H, W)`` float32 registered frames.
    """
    a = np.asarray(frames, dtype=np.float32)
    if out is None:
        out = np.empty_like(a)
    fy, fx = shift_field(pshifts, grid)
    for i in range(a.shape[0]):
        apply_field(a[i], fy[i], fx[i], border_nan=border_nan, out=out[i])
    return out
