"""Preview of the detected calcium events of the accepted cells.

Top: raster (cells x time). Middle: population event rate over time. Bottom left:
histogram of per-cell event rates. Bottom right: histogram of mean inter-event intervals.
Events are the frames where ``S > event_threshold * neurons_sn`` (as in the event sets).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cellextract.cnmf.estimates import Estimates
from cellextract.export.isxd import cell_names, event_frames
from cellextract.previews._style import (mark_boundaries, message_figure, plt, plural,
                                         save_figure)
from cellextract.previews.cells import accepted_indices

__all__ = ["event_times", "event_statistics", "plot_events"]


def event_times(est: Estimates, cells: np.ndarray, *, fr: float, frames: tuple[int, int],
                invalid: np.ndarray | None = None,
                event_threshold: float = 0.0) -> list[np.ndarray]:
    """Event times (s since ``frames[0]``) of the given cells.

    Parameters
    ----------
    est : Estimates
        Model with ``S`` of shape (K, T) (and ``neurons_sn`` when ``event_threshold > 0``).
    cells : ndarray of int
        Component indices.
    fr : float
        Frame rate (Hz).
    frames : (start, stop)
        Frame range.
    invalid : ndarray of bool, shape (stop - start,), optional
        Frames that cannot hold events.
    event_threshold : float
        Noise units.

    Returns
    -------
    list of ndarray of float
        One array per cell, seconds.
    """
    s, e = frames
    if est.S is None or len(cells) == 0:
        return [np.zeros(0) for _ in cells]
    S = np.asarray(est.S[np.asarray(cells, int), s:e], dtype=np.float64)
    thr = 0.0
    if event_threshold and est.neurons_sn is not None:
        thr = event_threshold * np.asarray(est.neurons_sn, float)[np.asarray(cells, int)]
    valid = None if invalid is None else ~np.asarray(invalid, bool)
    return [f / float(fr) for f in event_frames(S, threshold=thr, valid=valid)]


def event_statistics(times: list[np.ndarray], *,
                     duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell event rate (Hz) and mean inter-event interval (s; NaN with < 2 events)."""
    rates = np.array([len(t) / duration_s if duration_s > 0 else 0.0 for t in times])
    iei = np.array([np.mean(np.diff(t)) if len(t) > 1 else np.nan for t in times])
    return rates, iei


def _raster(ax, times, names, cells, duration, boundaries):
    n = len(times)
    ax.eventplot(times, lineoffsets=np.arange(n), linelengths=0.8, colors="black",
                 linewidths=0.7 if n < 100 else 0.4)
    ax.set_xlim(0, duration)
    ax.set_ylim(n - 0.5, -0.5)
    if n <= 25:
        ax.set_yticks(np.arange(n))
        ax.set_yticklabels([names[k] for k in cells], fontsize=7 if n > 12 else 8)
    ax.set_ylabel("cell")
    ax.set_xlabel("time (s)")
    total = int(sum(len(t) for t in times))
    ax.set_title(f"Events of {plural(n, 'accepted cell')} ({plural(total, 'event')})", fontsize=10,
                 pad=16 if len(boundaries) else 6)
    if total == 0:
        ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center",
                fontsize=16, color="0.3")
    mark_boundaries(ax, boundaries)


def _population_rate(ax, times, duration, fr, boundaries):
    bin_s = max(1.0 / fr, duration / 150.0)
    edges = np.arange(0.0, duration + bin_s, bin_s)
    allt = np.concatenate(times) if times else np.zeros(0)
    counts, _ = np.histogram(allt, bins=edges)
    rate = counts / (max(len(times), 1) * bin_s)
    ax.stairs(rate, edges, color="tab:blue", fill=True, alpha=0.6)
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("events / s / cell")
    ax.set_title(f"Population event rate (bins of {bin_s:.3g} s)", fontsize=10)
    mark_boundaries(ax, boundaries, label=False)


def _histogram(ax, values, *, xlabel, title, empty):
    v = values[np.isfinite(values)]
    if v.size == 0:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center",
                fontsize=11, color="0.3")
        ax.set_yticks([])
    else:
        ax.hist(v, bins=min(30, max(5, int(np.sqrt(v.size)) * 2)), color="tab:gray",
                edgecolor="white")
        ax.set_ylabel("number of cells")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)


def plot_events(path: str | os.PathLike, est: Estimates, *, fr: float,
                frames: tuple[int, int] | None = None, boundaries: list[float] = (),
                invalid: np.ndarray | None = None, event_threshold: float = 0.0,
                title: str = "Detected calcium events") -> Path:
    """Save the events preview (raster, population rate, rate and interval histograms).

    Parameters
    ----------
    path : str or PathLike
        Output PNG.
    est : Estimates
        Evaluated model; ``S`` of shape (K, T).
    fr : float
        Frame rate (Hz).
    frames : (start, stop) or None
        Frame range (one input file); None = whole series.
    boundaries : sequence of float
        File start times (s) to mark.
    invalid : ndarray of bool, shape (stop - start,), optional
        Frames without data (no events there; excluded from the rate's duration).
    event_threshold : float
        Noise units, as for the event sets.
    title : str
        Figure title.

    Returns
    -------
    Path
        The PNG written.
    """
    cells = accepted_indices(est)
    if cells.size == 0:
        msg = "No cells found" if est.n_components == 0 else "No accepted cells"
        return message_figure(path, title=title, message=msg)
    frames = (0, est.n_frames) if frames is None else (int(frames[0]), int(frames[1]))
    n = frames[1] - frames[0]
    duration = n / float(fr)
    n_valid = n - (0 if invalid is None else int(np.asarray(invalid, bool).sum()))
    times = event_times(est, cells, fr=fr, frames=frames, invalid=invalid,
                        event_threshold=event_threshold)
    rates, iei = event_statistics(times, duration_s=n_valid / float(fr))
    fig = plt.figure(figsize=(13, 10.5), layout="constrained")
    gs = fig.add_gridspec(3, 2, height_ratios=[3.0, 1.4, 1.7])
    _raster(fig.add_subplot(gs[0, :]), times, cell_names(est.n_components), cells, duration,
            boundaries)
    _population_rate(fig.add_subplot(gs[1, :]), times, duration, fr, boundaries)
    _histogram(fig.add_subplot(gs[2, 0]), rates, xlabel="event rate (Hz)",
               title="Event rate per cell", empty="no events")
    _histogram(fig.add_subplot(gs[2, 1]), iei, xlabel="mean inter-event interval (s)",
               title="Mean inter-event interval per cell", empty="no cell has 2 or more events")
    thr = "S > 0" if not event_threshold else f"S > {event_threshold:g} x noise"
    fig.suptitle(f"{title} (events where {thr})", fontsize=13)
    return save_figure(fig, path)
