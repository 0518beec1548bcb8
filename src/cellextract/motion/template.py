"""Registration template: one image for the whole series.

Frames are sampled evenly across the (concatenated) movie, so the template represents the
whole recording and every file of a series is aligned to the same reference. The initial
template is the pixel-wise median of the samples; each refinement pass registers the
samples to the current template and replaces the template by the mean of the registered
samples (mean rather than median so that the high-pass filtered template equals the mean
of the filtered registered frames; edges replicated rather than NaN so a plain mean can
be used). The median is taken over at most 40 of the samples (it only seeds the first
registration).
"""

from __future__ import annotations

import numpy as np

from cellextract.motion.apply import apply_rigid
from cellextract.motion.register import rigid_shifts, template_spectrum


def sample_indices(n_frames: int, n_samples: int) -> np.ndarray:
    """Indices of ``min(n_frames, n_samples)`` frames evenly spread over ``0..n_frames-1``."""
    k = max(1, min(int(n_frames), int(n_samples)))
    return np.unique(np.round(np.linspace(0, n_frames - 1, k)).astype(np.int64))


def read_samples(reader, n_samples: int = 300) -> np.ndarray:
    """Read frames spread across a movie.

    Parameters
    ----------
    reader : object
        Has ``n_frames`` and ``read(start, stop) -> (n, H, W)``.
    n_samples : int
        Number of frames wanted.

    Returns
    -------
    np.ndarray
        ``(k, H, W)`` float32 frames, ``k = min(n_frames, n_samples)``.
    """
    idx = sample_indices(reader.n_frames, n_samples)
    out = np.empty((idx.size,) + tuple(int(d) for d in reader.dims), np.float32)
    for k, i in enumerate(idx):  # preallocated: no second copy of the samples
        out[k] = reader.read(int(i), int(i) + 1)[0]
    return out


def rigid_template(samples: np.ndarray, *, max_shifts=(5, 5), gSig_filt=None, niter_rig: int = 1,
                   upsample: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Build the rigid template from sample frames.

    Parameters
    ----------
    samples : np.ndarray
        ``(k, H, W)`` frames spread across the movie.
    max_shifts : (int, int)
        Largest |shift| in pixels.
    gSig_filt : float, pair or None
        High-pass width for registration.
    niter_rig : int
        Refinement passes (register samples, average); at least 1 is done.
    upsample : int
        Sub-pixel factor.

    Returns
    -------
    template : np.ndarray
        ``(H, W)`` float32 template (unfiltered).
    shifts : np.ndarray
        ``(k, 2)`` shifts of the samples found in the last pass.
    """
    samples = np.asarray(samples, dtype=np.float32)
    seed = samples[np.unique(np.linspace(0, samples.shape[0] - 1, min(40, samples.shape[0])).astype(int))]
    template = np.median(seed, axis=0).astype(np.float32)
    shifts = np.zeros((samples.shape[0], 2), np.float32)
    for _ in range(max(1, int(niter_rig))):
        spec = template_spectrum(template, gSig_filt=gSig_filt)
        shifts = np.concatenate([
            rigid_shifts(samples[i:i + 24], spec, max_shifts=max_shifts, gSig_filt=gSig_filt, upsample=upsample)
            for i in range(0, samples.shape[0], 24)])
        # re-centre so the template sits at the median position of the samples
        shifts -= np.median(shifts, axis=0)
        acc = np.zeros(template.shape)
        for i in range(0, samples.shape[0], 32):  # batched: no second copy of the samples
            acc += apply_rigid(samples[i:i + 32], shifts[i:i + 32], border_nan="copy").sum(axis=0, dtype=np.float64)
        template = (acc / samples.shape[0]).astype(np.float32)
    return template, shifts
