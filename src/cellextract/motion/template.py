"""Registration template: one image for the whole series.

Frames are sampled evenly across the (concatenated) movie, so the template represents the
whole recording and every file of a series is aligned to the same reference. The initial
template is the pixel-wise median of the samples; each refinement pass registers the
samples to the current template and replaces the template by the mean of the registered
samples (mean rather than median so that the high-pass filtered template equals the mean
of the filtered registered frames; edges replicated rather than NaN so a plain mean can
be used). The median is taken over at most 40 of the samples (it only seeds the first
registration). Batches of samples can be registered in parallel (``map_fn``).
"""

from __future__ import annotations

import cv2
import numpy as np

from cellextract.motion.apply import apply_rigid
from cellextract.motion.register import rigid_shifts, template_spectrum


def sample_indices(n_frames: int, n_samples: int) -> np.ndarray:
    """Indices of ``min(n_frames, n_samples)`` frames evenly spread over ``0..n_frames-1``."""
    k = max(1, min(int(n_frames), int(n_samples)))
    return np.unique(np.round(np.linspace(0, n_frames - 1, k)).astype(np.int64))


def read_samples(reader, n_samples: int = 300, *, map_fn=map, reader_fn=None) -> np.ndarray:
    """Read frames spread across a movie.

    Parameters
    ----------
    reader : object
        Has ``n_frames``, ``dims`` and ``read(start, stop) -> (n, H, W)``.
    n_samples : int
        Number of frames wanted.
    map_fn : callable, optional
        ``map``-like function to read in parallel (with ``reader_fn``).
    reader_fn : callable, optional
        Returns the reader of the calling thread (default: ``reader``).

    Returns
    -------
    np.ndarray
        ``(k, H, W)`` float32 frames, ``k = min(n_frames, n_samples)``.
    """
    idx = sample_indices(reader.n_frames, n_samples)
    out = np.empty((idx.size,) + tuple(int(d) for d in reader.dims), np.float32)
    get = reader_fn or (lambda: reader)

    def read(k):  # into the preallocated array: no second copy of the samples
        out[k] = get().read(int(idx[k]), int(idx[k]) + 1)[0]

    for _ in map_fn(read, range(idx.size)):
        pass
    return out


def median_image(frames: np.ndarray) -> np.ndarray:
    """``(H, W)`` pixel-wise median of ``(k, H, W)`` finite frames (a partition along the
    contiguous axis of the transposed stack: ~6x faster than ``np.median(axis=0)``)."""
    k = frames.shape[0]
    if k == 1 or not np.isfinite(frames).all():
        return np.median(frames, axis=0).astype(np.float32)
    X = cv2.transpose(np.ascontiguousarray(frames.reshape(k, -1), dtype=np.float32))  # (P, k)
    m = k // 2
    if k % 2:
        X.partition(m, axis=1)
        med = X[:, m]
    else:
        X.partition((m - 1, m), axis=1)
        med = 0.5 * (X[:, m - 1] + X[:, m])
    return med.reshape(frames.shape[1:]).astype(np.float32)


def rigid_template(samples: np.ndarray, *, max_shifts=(5, 5), gSig_filt=None, niter_rig: int = 1,
                   upsample: int = 10, map_fn=map) -> tuple[np.ndarray, np.ndarray]:
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
    map_fn : callable, optional
        ``map``-like function running batches in parallel (results in order).

    Returns
    -------
    template : np.ndarray
        ``(H, W)`` float32 template (unfiltered).
    shifts : np.ndarray
        ``(k, 2)`` shifts of the samples found in the last pass.
    """
    samples = np.asarray(samples, dtype=np.float32)
    n = samples.shape[0]
    seed = samples[np.unique(np.linspace(0, n - 1, min(40, n)).astype(int))]
    template = median_image(seed)
    shifts = np.zeros((n, 2), np.float32)
    starts = range(0, n, 16)
    for _ in range(max(1, int(niter_rig))):
        spec = template_spectrum(template, gSig_filt=gSig_filt)
        shifts = np.concatenate(list(map_fn(
            lambda i, spec=spec: rigid_shifts(samples[i:i + 16], spec, max_shifts=max_shifts, gSig_filt=gSig_filt,
                                   upsample=upsample), starts)))
        # re-centre so the template sits at the median position of the samples
        shifts -= np.median(shifts, axis=0)
        # batched: no second copy of the samples
        sums = map_fn(lambda i, sh=shifts: apply_rigid(samples[i:i + 16], sh[i:i + 16], border_nan="copy")
                      .sum(axis=0, dtype=np.float64), starts)
        template = (sum(sums) / n).astype(np.float32)
    return template, shifts
