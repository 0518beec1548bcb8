"""Synthetic calcium-imaging movies with exact ground truth.

:func:`simulate` builds a lazy :class:`Simulation`: ground truth (footprints, traces,
shifts) is computed up front; frames are rendered on demand, chunk by chunk, so a
512 x 512 x 30000 movie needs memory for one chunk only. Frame ``t`` is a pure function
of ``(seed, t)``: any chunking gives identical frames.

Image model, in the unmoved tissue frame (canvas with a motion margin)::

    X_t = tau * (A_canvas @ (b + c_t) + B @ f_t)           expected signal
    raw_t = vignette * warp(X_t, shift_t) + offset + noise

``tau`` is the blood-vessel transmission, ``warp`` the motion (see
:mod:`cellextract.simulate.motion`), noise is Gaussian with variance
``gain * signal + read_sd**2`` (shot noise + read noise); values are clipped at 0.

Presets (:data:`PRESETS`), for the accuracy benchmarks:

* ``'bench_1p'``: 1P / CNMF-E regime, 256 x 256 px, 3000 frames at 10 Hz, 150 neurons
  (gsig 3.2 px, 10 % overlapping pairs), decay 0.4 s, no motion.
* ``'bench_2p'``: 2P / CNMF regime, 256 x 256 px, 3000 frames at 30 Hz, 150 neurons
  (soma radius ~5 px, 15 % overlapping pairs), decay 0.4 s, no motion.

Any keyword given with a preset that differs from the function default overrides the
preset (e.g. ``motion='pw_rigid'``, ``frames=500``).

Ground truth lives in the unmoved frame. Vignetting is fixed to the camera, so with
motion the truth footprints carry the vignette at their unmoved position (a few %
brightness difference at the corners for 5 px shifts).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import scipy.sparse as sp

from cellextract.errors import ParameterError
from cellextract.simulate import background as bgm
from cellextract.simulate import motion as mot
from cellextract.simulate.footprints import place_centers, render_footprints
from cellextract.simulate.traces import neuron_activity
from cellextract.simulate.truth import Truth

__all__ = ["Simulation", "simulate", "PRESETS", "KIND_DEFAULTS"]

PRESETS = {
    "bench_1p": dict(kind="1p", dims=(256, 256), frames=3000, n_neurons=150, fr=10.0),
    "bench_2p": dict(kind="2p", dims=(256, 256), frames=3000, n_neurons=150, fr=30.0),
}

#: Per-kind defaults: frame rate, neuron size, spike amplitude relative to the
#: background level, resting baseline range, pair fraction, camera offset, noise.
KIND_DEFAULTS = {
    "1p": dict(fr=10.0, gsig=3.2, decay_time=0.4, amp_rel=0.055, amp_sigma=0.55,
               base_rel=(0.3, 1.0), pair_frac=0.10, offset=100.0, gain=0.25, read_sd=4.0),
    "2p": dict(fr=30.0, gsig=4.0, decay_time=0.4, amp_rel=0.45, amp_sigma=0.5,
               base_rel=(0.8, 2.0), pair_frac=0.15, offset=0.0, gain=1.0, read_sd=1.0),
}
_MOTIONS = ("none", "rigid", "pw_rigid")
_BLOCK_BYTES = 64 << 20


class Simulation:
    """A lazily rendered synthetic movie plus its ground truth.

    Attributes
    ----------
    truth : Truth
        Ground truth (footprints, traces, shifts, ...).
    dims : (H, W)
    n_frames : int
    fr : float
    chunk : int
        Default number of frames per chunk of :meth:`iter_chunks`.
    """

    def __init__(self, *, truth: Truth, A_canvas: sp.csc_matrix, calcium: np.ndarray,
                 base: np.ndarray, B: np.ndarray, F: np.ndarray, vig: np.ndarray,
                 margin: int, field_grid: bool, offset: float, gain: float, read_sd: float,
                 chunk: int):
        self.truth = truth
        self.dims = truth.dims
        self.n_frames = truth.n_frames
        self.fr = truth.fr
        self.chunk = int(chunk)
        self._A = A_canvas
        self._calcium = calcium
        self._base = base
        self._B, self._F = B, F
        self._vig = vig
        self._margin = margin
        self._pw = field_grid
        self._offset, self._gain, self._read = offset, gain, read_sd

    @property
    def vignette(self) -> np.ndarray:
        """Multiplicative illumination map in camera coordinates, (H, W) float32."""
        return self._vig

    @property
    def canvas(self) -> tuple[int, int]:
        """Canvas size ``(H + 2m, W + 2m)``."""
        H, W = self.dims
        return H + 2 * self._margin, W + 2 * self._margin

    def _tissue(self, t0: int, t1: int, *, neurons: bool = True,
                background: bool = True) -> np.ndarray:
        """Expected tissue fluorescence on the canvas, (n, Hc, Wc) float32."""
        Hc, Wc = self.canvas
        X = np.zeros((Hc * Wc, t1 - t0), np.float32)
        if neurons and self._A.shape[1]:
            X += self._A @ (self._base[:, None] + self._calcium[:, t0:t1])
        if background:
            X += self._B @ self._F[:, t0:t1]
        return np.ascontiguousarray(X.T).reshape(t1 - t0, Hc, Wc)

    def _block(self, t0: int, t1: int, *, noise: bool, motion: bool, neurons: bool,
               background: bool) -> np.ndarray:
        H, W = self.dims
        m = self._margin
        tissue = self._tissue(t0, t1, neurons=neurons, background=background)
        out = np.empty((t1 - t0, H, W), np.float32)
        for i, t in enumerate(range(t0, t1)):
            if not motion:
                fr_ = tissue[i, m:m + H, m:m + W]
            elif self._pw:
                fr_ = mot.warp_frame(tissue[i], self.dims, m,
                                     field=mot.dense_field(self.truth.shift_field[t], self.dims))
            else:
                fr_ = mot.warp_frame(tissue[i], self.dims, m, shift=self.truth.shifts[t])
            x = np.maximum(fr_ * self._vig, 0.0)
            if noise:
                rng = np.random.default_rng([int(self.truth.seed), 7919, t])
                z = rng.standard_normal((H, W), dtype=np.float32)
                x = x + np.sqrt(self._gain * x + self._read ** 2) * z
            out[i] = np.maximum(x + (self._offset if background else 0.0), 0.0)
        return out

    def frames(self, start: int = 0, stop: int | None = None, *, noise: bool = True,
               motion: bool = True, neurons: bool = True, background: bool = True) -> np.ndarray:
        """Render frames ``start:stop``.

        Parameters
        ----------
        start, stop : int
            Frame range (``stop`` defaults to the end).
        noise, motion, neurons, background : bool
            Switch parts of the model off (e.g. ``noise=False, motion=False`` gives the
            expected unmoved movie; ``background=False`` also drops the camera offset).

        Returns
        -------
        frames : ndarray, shape (stop - start, H, W), float32, non-negative.
        """
        stop = self.n_frames if stop is None else min(int(stop), self.n_frames)
        start = max(0, int(start))
        Hc, Wc = self.canvas
        step = max(1, _BLOCK_BYTES // (4 * Hc * Wc))
        out = np.empty((max(stop - start, 0),) + tuple(self.dims), np.float32)
        for b0 in range(start, stop, step):
            b1 = min(stop, b0 + step)
            out[b0 - start:b1 - start] = self._block(b0, b1, noise=noise, motion=motion,
                                                     neurons=neurons, background=background)
        return out

    def iter_chunks(self, chunk: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, frames (n, H, W) float32)`` over the whole movie."""
        chunk = int(chunk or self.chunk)
        for s in range(0, self.n_frames, chunk):
            yield s, self.frames(s, s + chunk)

    def __iter__(self):
        return self.iter_chunks()


def _check(kind, dims, frames, n_neurons, fr, motion, max_shift):
    if kind not in KIND_DEFAULTS:
        raise ParameterError(f"simulate: kind must be '1p' or '2p', got {kind!r}")
    if motion not in _MOTIONS:
        raise ParameterError(f"simulate: motion must be one of {_MOTIONS}, got {motion!r}")
    if len(dims) != 2 or min(dims) < 16:
        raise ParameterError(f"simulate: dims must be (H, W) with H, W >= 16, got {dims!r}")
    if frames < 1 or n_neurons < 0 or fr <= 0 or max_shift < 0:
        raise ParameterError("simulate: frames >= 1, n_neurons >= 0, fr > 0, max_shift >= 0 required")


def _fortran_truth_A(A_canvas, dims, margin, vig):
    """Crop canvas footprints to the FOV, apply vignetting, Fortran order, unit norm."""
    H, W = dims
    Wc = W + 2 * margin
    A = A_canvas.tocoo()
    r, c = A.row // Wc - margin, A.row % Wc - margin
    ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    r, c = r[ok], c[ok]
    vals = A.data[ok] * vig[r, c]
    Af = sp.csc_matrix((vals.astype(np.float32), (r + c * H, A.col[ok])), shape=(H * W, A.shape[1]))
    norms = np.sqrt(np.asarray(Af.multiply(Af).sum(0))).ravel()
    norms = np.maximum(norms, 1e-12)
    return sp.csc_matrix(Af @ sp.diags(1.0 / norms).astype(np.float32)), norms


def simulate(*, kind: str = "1p", dims=(128, 128), frames: int = 1000, n_neurons: int = 40,
             fr: float | None = None, motion: str = "none", max_shift: float = 5.0,
             decay_time: float | None = None, seed: int = 0, chunk: int = 500,
             preset: str | None = None, gsig: float | None = None, ar_order: int = 2,
             noise_scale: float = 1.0, background_scale: float = 1.0) -> Simulation:
    """Build a synthetic movie (lazy) with its ground truth.

    Parameters
    ----------
    kind : {'1p', '2p'}
        Imaging regime (see module docstring).
    dims : (H, W)
        Frame size, px.
    frames : int
        Number of frames ``T``.
    n_neurons : int
        Number of neurons ``K``.
    fr : float, optional
        Frame rate, Hz (default 10 for 1P, 30 for 2P).
    motion : {'none', 'rigid', 'pw_rigid'}
    max_shift : float
        Bound on the absolute shift per axis, px (rigid part + deformation).
    decay_time : float, optional
        Median calcium decay time, s (default 0.4).
    seed : int
    chunk : int
        Default frames per chunk when streaming.
    preset : {'bench_1p', 'bench_2p'}, optional
        Benchmark preset; explicitly passed keywords override it.
    gsig : float, optional
        Neuron size, px (1P Gaussian sigma, default 3.2; 2P soma radius / 1.25,
        default 4).
    ar_order : int
        1 or 2 (AR(2) uses a 60 ms rise time).
    noise_scale, background_scale : float
        Multiply the noise standard deviation / the background level.

    Returns
    -------
    Simulation
    """
    if preset is not None:
        if preset not in PRESETS:
            raise ParameterError(f"simulate: unknown preset {preset!r}; use one of {list(PRESETS)}")
        given = dict(kind=kind, dims=dims, frames=frames, n_neurons=n_neurons, fr=fr)
        defaults = dict(kind="1p", dims=(128, 128), frames=1000, n_neurons=40, fr=None)
        merged = dict(PRESETS[preset])
        merged.update({k: v for k, v in given.items() if v != defaults[k]})
        kind, dims, frames, n_neurons, fr = (merged[k] for k in
                                             ("kind", "dims", "frames", "n_neurons", "fr"))
    kd = KIND_DEFAULTS.get(kind, {})
    fr = float(fr if fr is not None else kd.get("fr", 10.0))
    dims = tuple(int(d) for d in dims)
    _check(kind, dims, int(frames), int(n_neurons), fr, motion, float(max_shift))
    decay_time = float(decay_time if decay_time is not None else kd["decay_time"])
    gsig = float(gsig if gsig is not None else kd["gsig"])
    T, K, H, W = int(frames), int(n_neurons), dims[0], dims[1]
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(6)]
    r_place, r_fp, r_act, r_bg, r_mot, r_ves = rngs

    max_shift = float(max_shift) if motion != "none" else 0.0
    margin = mot.motion_margin(max_shift) + (1 if motion == "pw_rigid" else 0)
    canvas = (H + 2 * margin, W + 2 * margin)

    radius = gsig if kind == "1p" else 1.25 * gsig
    pair = (1.0 * radius, 1.9 * radius) if kind == "1p" else (0.9 * radius, 1.6 * radius)
    centers = place_centers(r_place, dims, K, min_dist=2.6 * radius, pair_frac=kd["pair_frac"],
                            pair_dist=pair)
    A_canvas = render_footprints(r_fp, kind, canvas, centers + margin, gsig=gsig)
    tau = bgm.vessel_transmission(r_ves, canvas, n=bgm.KIND_BACKGROUND[kind]["n_vessels"],
                                  width=bgm.KIND_BACKGROUND[kind]["vessel_width"],
                                  depth=bgm.KIND_BACKGROUND[kind]["vessel_depth"])
    A_canvas = sp.csc_matrix(sp.diags(tau.ravel()).astype(np.float32) @ A_canvas)

    act = neuron_activity(r_act, K, T, fr, decay_time=decay_time, ar_order=ar_order,
                          amp_median=kd["amp_rel"] * bgm.KIND_BACKGROUND[kind]["level"],
                          amp_sigma=kd["amp_sigma"])
    base = (act["amplitude"] * r_act.uniform(*kd["base_rel"], K)).astype(np.float32)
    B, F = bgm.background_model(r_bg, kind, canvas, T, fr, scale=background_scale)
    B = sp.csc_matrix(sp.diags(tau.ravel()).astype(np.float32) @ B)
    vig = bgm.vignette(dims, bgm.KIND_BACKGROUND[kind]["vignette"])

    shifts, field = _motion(r_mot, motion, T, fr, dims, max_shift)
    A_true, norms = _fortran_truth_A(A_canvas, dims, margin, vig)
    bg_mean = (B @ F.mean(1).astype(np.float32)).reshape(canvas)[margin:margin + H, margin:margin + W] * vig
    gain = kd["gain"] * noise_scale ** 2
    read_sd = kd["read_sd"] * noise_scale
    noise_sd = np.sqrt(gain * np.maximum(bg_mean, 0) + read_sd ** 2).astype(np.float32)
    sd_f = noise_sd.ravel(order="F")
    proj_sd = np.sqrt(np.asarray(A_true.multiply(A_true).T @ (sd_f ** 2))).ravel()
    amp_true = (act["amplitude"] * norms).astype(np.float32)
    truth = Truth(A=A_true, C=(act["C"] * norms[:, None]).astype(np.float32),
                  S=(act["S"] * norms[:, None]).astype(np.float32),
                  baseline=(base * norms).astype(np.float32), g=act["g"], amplitude=amp_true,
                  snr=(amp_true / np.maximum(proj_sd, 1e-9)).astype(np.float32),
                  centers=centers.astype(np.float32), shifts=shifts, shift_field=field,
                  background=(bg_mean + kd["offset"]).astype(np.float32), noise_sd=noise_sd,
                  fr=fr, dims=dims, kind=kind, seed=int(seed), decay_time=decay_time,
                  motion=motion, max_shift=max_shift)
    return Simulation(truth=truth, A_canvas=A_canvas, calcium=act["C"], base=base, B=B, F=F,
                      vig=vig, margin=margin, field_grid=(motion == "pw_rigid"),
                      offset=kd["offset"], gain=gain, read_sd=read_sd, chunk=chunk)


def _motion(rng, motion, T, fr, dims, max_shift):
    """Rigid shifts (T, 2) and coarse field (T, 2, gh, gw), registration convention."""
    if motion == "none":
        z = np.zeros((T, 2), np.float32)
        return z, z[:, :, None, None].copy()
    if motion == "rigid":
        s = mot.rigid_trajectory(rng, T, fr, max_shift)
        return s, s[:, :, None, None].copy()
    deform = min(2.0, max_shift / 3.0)
    s = mot.rigid_trajectory(rng, T, fr, max_shift - deform)
    grid = tuple(int(np.clip(round(d / 96), 2, 6)) for d in dims)
    field = s[:, :, None, None] + mot.deformation_field(rng, T, fr, grid=grid, amplitude=deform)
    field = np.clip(field, -max_shift, max_shift).astype(np.float32)
    return field.mean(axis=(2, 3)).astype(np.float32), field
