"""Shared helpers of the preview figures (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cellextract.export._atomic import commit, remove_quietly, temp_path  # noqa: E402

__all__ = ["plural", "plt", "save_figure", "message_figure", "build_message_figure", "zscore",
           "decimate", "mark_boundaries",
           "cell_colors", "DPI"]

DPI = 110


def plural(n: int, word: str) -> str:
    """``'1 cell'``, ``'2 cells'``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG atomically (temp name, then rename) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        fig.savefig(tmp, dpi=DPI, format="png", pil_kwargs={"compress_level": 4})
        commit(tmp, path)
    finally:
        plt.close(fig)
        remove_quietly(tmp)
    return path


def message_figure(path: str | os.PathLike, *, title: str, message: str,
                   background: np.ndarray | None = None) -> Path:
    """Save a figure that states ``message`` (e.g. "No cells"), over ``background`` if given."""
    return save_figure(build_message_figure(title=title, message=message,
                                            background=background), path)


def build_message_figure(*, title: str, message: str, background: np.ndarray | None = None):
    """The figure of :func:`message_figure` (not saved)."""
    if background is None:
        fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
        ax.axis("off")
    else:
        fig, ax = plt.subplots(figsize=(8, 6.5), layout="constrained")
        ax.imshow(background, cmap="gray", interpolation="nearest")
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=20,
            color="black", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.5",
                                 "boxstyle": "round,pad=0.6"})
    fig.suptitle(title, fontsize=13)
    return fig


def zscore(x: np.ndarray) -> np.ndarray:
    """Z-score each row of ``x`` (shape (K, T)), ignoring NaN; flat rows become 0."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(x, axis=1, keepdims=True) if x.shape[1] else np.zeros((x.shape[0], 1))
        sd = np.nanstd(x, axis=1, keepdims=True) if x.shape[1] else np.ones((x.shape[0], 1))
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    return (x - mu) / sd


def decimate(t: np.ndarray, y: np.ndarray, *, max_points: int = 4000):
    """Min/max envelope of long traces for plotting.

    Parameters
    ----------
    t : ndarray, shape (T,)
        Sample times.
    y : ndarray, shape (K, T)
        Traces.
    max_points : int
        Above ``max_points`` samples, each bin of samples is replaced by its min and max.

    Returns
    -------
    t2 : ndarray, shape (T2,)
    y2 : ndarray, shape (K, T2)
    """
    T = t.size
    if T <= max_points:
        return t, y
    b = int(np.ceil(T / (max_points / 2)))
    n = T // b
    tb = t[: n * b].reshape(n, b)
    yb = y[:, : n * b].reshape(y.shape[0], n, b)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins
        lo, hi = np.nanmin(yb, axis=2), np.nanmax(yb, axis=2)
    t2 = np.repeat(tb.mean(axis=1), 2)
    y2 = np.empty((y.shape[0], 2 * n))
    y2[:, 0::2], y2[:, 1::2] = lo, hi
    return t2, y2


def mark_boundaries(ax, times_s, *, label: bool = True) -> None:
    """Dashed vertical lines at file boundaries (seconds), labelled ``file k``."""
    for k, x in enumerate(times_s):
        ax.axvline(x, color="0.35", linestyle="--", linewidth=1.0, zorder=0)
        if label:
            ax.text(x, 1.0, f" file {k + 1}", transform=ax.get_xaxis_transform(), ha="left",
                    va="bottom", fontsize=8, color="0.3")


def cell_colors(n: int) -> list:
    """``n`` distinct colours, strong ones first (tab20 even entries, then odd)."""
    cmap = plt.get_cmap("tab20")
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [cmap(order[i % 20]) for i in range(n)]
