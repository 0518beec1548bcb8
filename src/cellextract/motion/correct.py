"""Correct batches of frames against a fixed template (the per-process engine of ``run``)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cellextract.motion.apply import apply_rigid
from cellextract.motion.filters import highpass, highpass_transfer
from cellextract.motion.params import MotionParams
from cellextract.motion.piecewise import (
    _weights as field_weights,
)
from cellextract.motion.piecewise import (
    apply_piecewise,
    patch_grid,
    patch_shifts,
    template_patch_spectra,
)
from cellextract.motion.register import (
    image_spectra,
    register_spectra,
    template_spectrum,
)

UPSAMPLE = 4  # sub-pixel grid factor of the upsampled DFT (then parabolic refinement on that grid;
#              10 gives the same error to 1e-4 px on the simulator, at 2x the DFT work)


@dataclass
class BatchResult:
    """Output of :meth:`Corrector.correct` for ``n`` frames.

    Attributes
    ----------
    frames : np.ndarray
        ``(n, H, W)`` float32 corrected frames.
    shifts : np.ndarray
        ``(n, 2)`` rigid shifts (pixels).
    pw_shifts : np.ndarray or None
        ``(n, gy, gx, 2)`` patch shifts when piecewise-rigid.
    corr_before, corr_after : np.ndarray
        ``(n,)`` Pearson correlation of each frame's interior with the template.
    """

    frames: np.ndarray
    shifts: np.ndarray
    pw_shifts: np.ndarray | None
    corr_before: np.ndarray
    corr_after: np.ndarray


#: Rigid mode measures the shift on a central region of about this many pixels per axis
#: (plus the maximal shift on each side): at 512 x 512 about a quarter of the frame, 4x
#: less FFT and sub-pixel DFT work, same error on rigid motion (0.039 px on the 512 px 1P
#: simulation, full frame 0.039). With non-rigid motion the shift is that of the central
#: region (piecewise-rigid mode registers the whole frame). Frames up to ~1.25x this size
#: are registered whole.
REG_SIZE = 256


def _central(n: int, max_shift: int) -> slice:
    """Central index range of an axis of length ``n`` used for rigid registration."""
    from scipy.fft import next_fast_len

    c = next_fast_len(REG_SIZE + 2 * max_shift, real=True)
    if c >= 0.8 * n:
        return slice(0, n)
    a = (n - c) // 2
    return slice(a, a + c)


@dataclass(frozen=True)
class QCGrid:
    """The sample points of the QC correlation of frames with the template.

    Attributes
    ----------
    ys, xs : np.ndarray
        ``(ny,)``, ``(nx,)`` row and column indices (a regular interior grid).
    t : np.ndarray
        ``(ny, nx)`` float32 template values there, centred and of unit norm.
    """

    ys: np.ndarray
    xs: np.ndarray
    t: np.ndarray


def pearson_from_sums(S: np.ndarray) -> np.ndarray:
    """QC correlations from per-frame sums over the finite samples ``x`` of a frame.

    ``S (T, 5)`` holds ``sum x``, ``sum x**2``, ``sum x t``, ``sum t`` and the count of
    finite samples (``t``: :attr:`QCGrid.t`). Non-finite samples count as the mean of the
    finite ones (as :meth:`Corrector.correlation`), so the correlation is
    ``sum (x - m) t / sqrt(sum (x - m)**2)`` over the finite samples, ``m`` their mean;
    NaN for frames without finite samples.
    """
    S = np.asarray(S, np.float64)
    n = S[:, 4]
    with np.errstate(invalid="ignore", divide="ignore"):
        m = S[:, 0] / n
        num = S[:, 2] - m * S[:, 3]
        den = np.sqrt(np.maximum(S[:, 1] - n * m * m, 0.0))
        c = num / den
    c[n == 0] = np.nan
    return c.astype(np.float32)


class Corrector:
    """Registration state for one template.

    Parameters
    ----------
    template : np.ndarray
        ``(H, W)`` unfiltered template.
    params : MotionParams
        Validated parameters.
    """

    def __init__(self, template: np.ndarray, params: MotionParams):
        self.p = params
        self.template = np.asarray(template, dtype=np.float32)
        self.dims = self.template.shape
        H, W = self.dims
        g = params.gSig_filt
        ms = np.minimum(np.asarray(params.max_shifts, dtype=np.float64), [H // 2 - 1, W // 2 - 1])
        if params.pw_rigid and params.motion_correct:  # the rigid shift bounds the patch search: whole frame
            self.reg = (slice(0, H), slice(0, W))
        else:
            self.reg = (_central(H, int(ms[0])), _central(W, int(ms[1])))
        self.reg_dims = (self.reg[0].stop - self.reg[0].start, self.reg[1].stop - self.reg[1].start)
        if self.reg_dims == self.dims:
            self.spec = template_spectrum(self.template, gSig_filt=g)
        else:  # filter the whole template (no crop edge in the filtered image), then crop
            t = highpass(self.template, g) if g is not None else self.template
            self.spec = template_spectrum(np.ascontiguousarray(t[self.reg]))
        ms = np.minimum(ms, [self.reg_dims[0] // 2 - 1, self.reg_dims[1] // 2 - 1])
        self.max_shifts = ms
        self.grid = None
        self.khat = highpass_transfer(g, self.reg_dims) if g is not None else None
        if params.pw_rigid and params.motion_correct:
            self.grid = patch_grid(self.dims, strides=params.strides, overlaps=params.overlaps)
            self.patch_spec = template_patch_spectra(self.template, self.grid, gSig_filt=g)
            self._field_weights()
        margin = int(ms.max()) + 3 + (params.max_deviation_rigid if self.grid is not None else 0)
        margin = min(margin, max(0, (min(H, W) - 4) // 2))
        # a QC correlation needs ~10-20k pixels: every 2nd pixel at 256, every 4th at 512
        step = max(1, min(H, W) // 128)
        self._crop = (slice(margin, H - margin, step), slice(margin, W - margin, step))
        t = self.template[self._crop].astype(np.float64).ravel()
        t -= t.mean()
        nt = np.linalg.norm(t)
        self._t = (t / nt if nt > 0 else t).astype(np.float32)
        if self.grid is not None:
            self._wy = np.ascontiguousarray(self._wy_full[self._crop[0]])
            self._wxT = np.ascontiguousarray(self._wx_full[self._crop[1]].T)

    def _field_weights(self) -> None:
        """Spline weights from patch shifts to the QC points (piecewise-rigid)."""
        H, W = self.dims
        self._wy_full = field_weights(self.grid.centers_y, H)
        self._wx_full = field_weights(self.grid.centers_x, W)

    def qc_grid(self) -> QCGrid:
        """The QC sample points and template values (for sums computed elsewhere, e.g.
        band by band while the corrected movie is written)."""
        ys = np.arange(self.dims[0])[self._crop[0]]
        xs = np.arange(self.dims[1])[self._crop[1]]
        return QCGrid(ys, xs, self._t.reshape(ys.size, xs.size))

    def correlation(self, frames: np.ndarray) -> np.ndarray:
        """``(n,)`` Pearson correlation of each frame's interior with the template."""
        x = frames[:, self._crop[0], self._crop[1]].reshape(frames.shape[0], -1)
        return self._pearson(x)

    def _pearson(self, x: np.ndarray) -> np.ndarray:
        """Correlation of ``(n, m)`` samples at the QC points with the template's."""
        bad = ~np.isfinite(x)
        if bad.any():
            good = (~bad).sum(axis=1, keepdims=True)
            fill = np.where(bad, 0, x).sum(axis=1, keepdims=True, dtype=np.float64) / np.maximum(good, 1)
            x = np.where(bad, fill.astype(np.float32), x)
        xc = x - x.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        nx = np.sqrt(np.einsum("ij,ij->i", xc, xc, dtype=np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            c = (xc @ self._t).astype(np.float64) / nx
        allbad = bad.all(axis=1)
        c[allbad] = np.nan
        return c.astype(np.float32)

    def correlation_after(self, frames: np.ndarray, shifts: np.ndarray, pw: np.ndarray | None) -> np.ndarray:
        """``(n,)`` correlation with the template of the registered frames, sampled.

        The registered values are interpolated (bicubic, ``cv2.remap``) only at the QC
        points, so the frames need not be warped whole.
        """
        ys = np.arange(self.dims[0])[self._crop[0]].astype(np.float32)
        xs = np.arange(self.dims[1])[self._crop[1]].astype(np.float32)
        n = frames.shape[0]
        out = np.empty((n, ys.size * xs.size), np.float32)
        for i in range(n):
            if pw is None:
                fy, fx = np.float32(shifts[i, 0]), np.float32(shifts[i, 1])
            else:
                fy = self._wy @ pw[i, :, :, 0] @ self._wxT
                fx = self._wy @ pw[i, :, :, 1] @ self._wxT
            map_y = np.broadcast_to(ys[:, None] - fy, (ys.size, xs.size)).astype(np.float32)
            map_x = np.broadcast_to(xs[None, :] - fx, (ys.size, xs.size)).astype(np.float32)
            out[i] = cv2.remap(frames[i], map_x, map_y, cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE).reshape(-1)
        return self._pearson(out)

    def register(self, frames: np.ndarray, *, after: bool = True) -> BatchResult:
        """Shifts and QC correlations of a batch ``(n, H, W)``, without warping the frames
        (``frames`` of the result is None; the warp is done band by band later). Without
        ``after`` the correlation after correction is left NaN (computed from the written
        bands instead, see :meth:`qc_grid`)."""
        return self.correct(frames, warp=False, after=after)

    def _shifts(self, a: np.ndarray):
        """Rigid ``(n, 2)`` and patch ``(n, gy, gx, 2)`` (or None) shifts, and the
        registration images used."""
        n = a.shape[0]
        empty = ~np.isfinite(a).reshape(n, -1).any(axis=1)
        g = self.p.gSig_filt
        if g is not None and self.grid is None:
            # rigid: filter in the Fourier domain (the tapered template makes the
            # circular borders irrelevant), saving a spatial convolution per frame
            reg = a
            spec = image_spectra(a[:, self.reg[0], self.reg[1]])
            spec *= self.khat
        else:
            reg = highpass(a, g) if g is not None else a
            spec = image_spectra(reg[:, self.reg[0], self.reg[1]])
        ms = self.max_shifts
        shifts = register_spectra(spec, self.spec, self.reg_dims, lo=-ms, hi=ms, upsample=UPSAMPLE)
        shifts[empty] = 0.0
        pw = None
        if self.grid is not None:
            pw = patch_shifts(reg, self.patch_spec, self.grid, shifts,
                              max_deviation_rigid=self.p.max_deviation_rigid, upsample=UPSAMPLE)
            pw[empty] = 0.0
        return shifts, pw, reg

    def correct(self, frames: np.ndarray, *, warp: bool = True, after: bool = True) -> BatchResult:
        """Register and (``warp``) warp a batch ``(n, H, W)`` of raw frames in memory;
        without ``warp`` the after-correlation is sampled at the QC points only (or not
        computed: NaN, without ``after``)."""
        a = np.asarray(frames, dtype=np.float32)
        n = a.shape[0]
        corr_b = self.correlation(a)
        if not self.p.motion_correct:
            return BatchResult(a if warp else None, np.zeros((n, 2), np.float32), None, corr_b, corr_b.copy())
        shifts, pw, _ = self._shifts(a)
        if not warp:
            corr_a = self.correlation_after(a, shifts, pw) if after else np.full(n, np.nan, np.float32)
            return BatchResult(None, shifts, pw, corr_b, corr_a)
        if pw is None:
            out = apply_rigid(a, shifts, border_nan=self.p.border_nan)
        else:
            out = apply_piecewise(a, pw, self.grid, border_nan=self.p.border_nan)
        return BatchResult(out, shifts, pw, corr_b, self.correlation(out))
