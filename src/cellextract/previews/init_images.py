"""Preview of the initialisation images: PNR, correlation and search (= corr x PNR)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cellextract.previews._style import plt, save_figure

__all__ = ["plot_init_images"]


def _panel(fig, ax, img, *, title, label, cmap, threshold=None):
    finite = img[np.isfinite(img)]
    vmin, vmax = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    if vmax <= vmin:
        vmax = vmin + 1.0
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if threshold is not None and finite.size and finite.min() < threshold < finite.max():
        ax.contour(img, levels=[threshold], colors="red", linewidths=0.9)
        title += f"\n(red line: threshold {threshold:g})"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label(label)


def plot_init_images(path: str | os.PathLike, *, pnr: np.ndarray, corr: np.ndarray,
                     title: str = "Initialisation images", min_corr: float | None = None,
                     min_pnr: float | None = None) -> Path:
    """Save the PNR, correlation and search images side by side, with colour bars.

    Parameters
    ----------
    path : str or PathLike
        Output PNG.
    pnr : ndarray, shape (H, W)
        Peak-to-noise ratio image (unitless, multiples of the noise level).
    corr : ndarray, shape (H, W)
        Local correlation image (correlation with the 8 neighbours, in [-1, 1]).
    title : str
        Figure title.
    min_corr, min_pnr : float or None
        Seed thresholds of 'corr_pnr' initialisation, outlined when given.

    Returns
    -------
    Path
        The PNG written.
    """
    pnr = np.asarray(pnr, dtype=np.float64)
    corr = np.asarray(corr, dtype=np.float64)
    H, W = corr.shape
    aspect = W / max(H, 1)
    fig, axes = plt.subplots(1, 3, figsize=(5.2 * 3 * min(max(aspect, 0.6), 1.6) + 1.5, 5.4),
                             layout="constrained")
    _panel(fig, axes[0], pnr, title="Peak-to-noise ratio (PNR)", label="PNR (x noise)",
           cmap="viridis", threshold=min_pnr)
    _panel(fig, axes[1], corr, title="Correlation image", label="correlation with neighbours",
           cmap="viridis", threshold=min_corr)
    _panel(fig, axes[2], corr * pnr, title="Search image (correlation x PNR)",
           label="correlation x PNR", cmap="magma")
    fig.suptitle(title, fontsize=13)
    return save_figure(fig, path)
