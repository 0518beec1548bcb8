"""Preview of the accepted cells: footprints (left) and stacked z-scored traces (right).

Up to ``n_highlight`` cells, chosen evenly across the range of SNR and listed from the
highest to the lowest SNR, are drawn in colour (contours over the correlation image
and their traces); the other accepted cells are grey contours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib import patheffects

from cellextract.cnmf.estimates import Estimates
from cellextract.export.footprints import FootprintImages
from cellextract.export.isxd import cell_names
from cellextract.previews._style import (build_message_figure, cell_colors, decimate,
                                         mark_boundaries, plt, plural, save_figure,
                                         zscore)

__all__ = ["accepted_indices", "select_highlighted", "contour_level", "cells_figure",
           "plot_cells"]


def accepted_indices(est: Estimates) -> np.ndarray:
    """Accepted component indices (all components when the model was not evaluated)."""
    if est.idx_components is None:
        return np.arange(est.n_components)
    return np.sort(np.asarray(est.idx_components, dtype=int))


def _snr(est: Estimates) -> np.ndarray:
    if est.SNR_comp is not None:
        return np.nan_to_num(np.asarray(est.SNR_comp, dtype=np.float64), nan=-np.inf)
    C = np.asarray(est.C, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(np.nanmax(C, axis=1) / np.nanstd(C, axis=1), nan=-np.inf)


def select_highlighted(est: Estimates, *, n: int = 20) -> np.ndarray:
    """Pick up to ``n`` accepted cells spread across the SNR range.

    Parameters
    ----------
    est : Estimates
        Model with ``SNR_comp`` (else the peak / SD of ``C`` ranks the cells).
    n : int
        Maximum number of cells.

    Returns
    -------
    ndarray of int
        Component indices ordered from the highest to the lowest SNR.
    """
    acc = accepted_indices(est)
    if acc.size == 0:
        return acc
    order = acc[np.argsort(-_snr(est)[acc], kind="stable")]
    if order.size <= n:
        return order
    picks = np.unique(np.round(np.linspace(0, order.size - 1, n)).astype(int))
    return order[picks]


def contour_level(img: np.ndarray, *, energy: float = 0.9) -> float:
    """Intensity above which the brightest pixels hold ``energy`` of the footprint's L2 energy."""
    v = np.sort(img[img > 0].ravel())[::-1]
    if v.size == 0:
        return np.inf
    cum = np.cumsum(v ** 2)
    i = int(np.searchsorted(cum, energy * cum[-1]))
    return float(v[min(i, v.size - 1)])


def _draw_contour(ax, img, *, color, lw):
    """Draw the contour of one footprint; return (top, bottom, left, right) of its support."""
    ys, xs = np.nonzero(img > 0)
    if ys.size == 0:
        return None
    y0, x0 = ys.min() - 1, xs.min() - 1
    y1, x1 = ys.max() + 2, xs.max() + 2
    sub = np.zeros((y1 - y0, x1 - x0))
    sub[1:-1, 1:-1] = img[y0 + 1:y1 - 1, x0 + 1:x1 - 1]  # zero border closes the contour
    ax.contour(np.arange(x0, x1), np.arange(y0, y1), sub, levels=[contour_level(img) * 0.999],
               colors=[color], linewidths=lw)
    return float(ys.min()), float(ys.max()), float(xs.min()), float(xs.max())


def _max_projection(est: Estimates) -> np.ndarray:
    """Maximum over footprints, (H, W), without a dense (K, H, W) array."""
    H, W = est.dims
    A = est.A.tocsr()
    return np.asarray(A.max(axis=1).toarray()).reshape(W, H).T


def _label(ax, box, name, color, dims, outline):
    """Cell name at the top-right corner of its footprint (inside the image near edges)."""
    top, bottom, left, right = box
    near_top, near_right = top < 0.06 * dims[0], right > 0.85 * dims[1]
    return ax.text(left if near_right else right, bottom + 1 if near_top else top - 1, name,
                   color=color, fontsize=7.5, ha="right" if near_right else "left",
                   va="top" if near_top else "bottom", fontweight="bold",
                   path_effects=outline, clip_on=True)


def _footprint_panel(ax, est, highlight, others, colors, names):
    imgs = FootprintImages(est.A, est.dims)
    bg = est.Cn if est.Cn is not None else _max_projection(est)
    if bg is not None:
        bg = np.asarray(bg, dtype=np.float64)
        lo, hi = np.nanpercentile(bg, [1, 99.5])
        ax.imshow(bg, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
                  interpolation="nearest")
    for k in others:
        _draw_contour(ax, imgs[k], color="0.75", lw=0.7)
    outline = [patheffects.withStroke(linewidth=2.0, foreground="black")]
    labels = []
    for k, c in zip(highlight, colors):
        box = _draw_contour(ax, imgs[k], color=c, lw=1.6)
        if box is not None:
            labels.append(_label(ax, box, names[k], c, est.dims, outline))
    H, W = est.dims
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    return labels


def _declutter(fig, ax, texts, *, tries: int = 16) -> None:
    """Shift labels that overlap earlier ones by whole label heights (up, down, ...)."""
    if len(texts) < 2:
        return
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for t in texts:
        bb = t.get_window_extent(renderer)
        origin = ax.transData.transform(t.get_position())
        for i in range(1, tries + 1):
            if not any(bb.overlaps(p) for p in placed):
                break
            step = bb.height * 1.05 * ((i + 1) // 2) * (1 if i % 2 else -1)  # +1, -1, +2, ...
            t.set_position(ax.transData.inverted().transform(origin + np.array([0.0, step])))
            bb = t.get_window_extent(renderer)
        placed.append(bb)


def _footprint_titles(ax, highlight, others):
    ax.set_title(f"Footprints on the correlation image\n{len(highlight)} highlighted in colour, "
                 f"{len(others)} other accepted in grey", fontsize=10)


def _traces_panel(ax, traces, t, highlight, colors, names, *, boundaries, kind):
    z = zscore(traces[highlight])
    finite = z[np.isfinite(z)]
    lane = max(4.0, float(np.percentile(finite, 99.5)) if finite.size else 4.0)
    t2, z2 = decimate(t, z)
    for i, (k, c) in enumerate(zip(highlight, colors)):
        ax.plot(t2, z2[i] - i * lane, color=c, linewidth=0.8)
    ax.set_yticks([-i * lane for i in range(len(highlight))])
    ax.set_yticklabels([names[k] for k in highlight], fontsize=8 if len(highlight) > 10 else 9)
    for lbl, c in zip(ax.get_yticklabels(), colors):
        lbl.set_color(c)
    ax.set_ylim(-(len(highlight) - 1) * lane - lane * 0.6, lane * 1.1)
    if t.size:
        ax.set_xlim(t[0], t[-1] if t[-1] > t[0] else t[0] + 1)
    mark_boundaries(ax, boundaries)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"cell (z-scored, {lane:.0f} SD between rows)")
    ax.set_title(f"{kind.capitalize()} traces, highest to lowest SNR", fontsize=10,
                 pad=16 if len(boundaries) else 6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _frame_slice(est, frames):
    s, e = (0, est.n_frames) if frames is None else (int(frames[0]), int(frames[1]))
    return s, e


def plot_cells(path: str | os.PathLike, est: Estimates, *, kind: str = "raw", fr: float,
               frames: tuple[int, int] | None = None, boundaries: list[float] = (),
               invalid: np.ndarray | None = None, title: str | None = None,
               n_highlight: int = 20) -> Path:
    """Save the footprints-and-traces preview of one cell set as PNG ``path``.

    Parameters are those of :func:`cells_figure`. Returns the PNG path.
    """
    fig = cells_figure(est, kind=kind, fr=fr, frames=frames, boundaries=boundaries,
                       invalid=invalid, title=title, n_highlight=n_highlight)
    return save_figure(fig, path)


def cells_figure(est: Estimates, *, kind: str = "raw", fr: float,
                 frames: tuple[int, int] | None = None, boundaries: list[float] = (),
                 invalid: np.ndarray | None = None, title: str | None = None,
                 n_highlight: int = 20):
    """Build the footprints-and-traces figure of one cell set.

    Parameters
    ----------
    est : Estimates
        Evaluated model; ``C`` and ``YrA`` of shape (K, T), ``A`` (H*W, K).
    kind : {'raw', 'denoised'}
        Traces ``C + YrA`` or ``C``.
    fr : float
        Frame rate (Hz); time axis is ``(frame - frames[0]) / fr`` seconds.
    frames : (start, stop) or None
        Frame range shown (one input file); None = whole series.
    boundaries : sequence of float
        Times (s, on this figure's axis) of file starts to mark with dashed lines.
    invalid : ndarray of bool, shape (stop - start,), optional
        Frames without data (drawn as gaps).
    title : str or None
        Figure title.
    n_highlight : int
        Maximum number of highlighted cells.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels (footprints, traces), or a message figure when there is no accepted cell.
    """
    if kind not in ("raw", "denoised"):
        raise ValueError(f"kind must be 'raw' or 'denoised', got {kind!r}")
    title = title or f"{kind.capitalize()} cell set"
    acc = accepted_indices(est)
    if acc.size == 0:
        msg = "No cells found" if est.n_components == 0 else "No accepted cells"
        return build_message_figure(title=title, message=msg, background=est.Cn)
    highlight = select_highlighted(est, n=n_highlight)
    others = np.setdiff1d(acc, highlight)
    colors = cell_colors(len(highlight))
    names = cell_names(est.n_components)
    s, e = _frame_slice(est, frames)
    traces = np.array(est.C[:, s:e], dtype=np.float64)
    if kind == "raw" and est.YrA is not None:
        traces += est.YrA[:, s:e]
    if invalid is not None:
        traces[:, np.asarray(invalid, bool)] = np.nan
    t = np.arange(e - s) / float(fr)
    H, W = est.dims
    fp_w = 5.5 * min(max(W / max(H, 1), 0.6), 1.8)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(fp_w + 9.0, 7.2), layout="constrained",
                                   width_ratios=[fp_w, 9.0])
    labels = _footprint_panel(ax0, est, highlight, others, colors, names)
    _footprint_titles(ax0, highlight, others)
    _traces_panel(ax1, traces, t, highlight, colors, names, boundaries=boundaries, kind=kind)
    fig.suptitle(f"{title}: {acc.size} accepted of {plural(est.n_components, 'cell')}",
                 fontsize=13)
    _declutter(fig, ax0, labels)
    return fig
