"""Motion-correction preview: shifts over time, mean images, correlation with the template."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _limits(img: np.ndarray) -> tuple[float, float]:
    v = img[np.isfinite(img)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [1, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def plot_motion(out_png, *, shifts, mean_before, mean_after, corr_before, corr_after, fr=None,
                pw_shifts=None) -> Path:
    """Write the motion preview PNG.

    Parameters
    ----------
    out_png : str or Path
        Output file.
    shifts : np.ndarray
        ``(T, 2)`` rigid shifts (pixels, registration convention).
    mean_before, mean_after : np.ndarray
        ``(H, W)`` mean image of the raw and of the corrected movie.
    corr_before, corr_after : np.ndarray
        ``(T,)`` correlation of each frame with the template, before and after.
    fr : float, optional
        Frame rate (Hz); the time axis is in seconds when given, in frames otherwise.
    pw_shifts : np.ndarray, optional
        ``(T, gy, gx, 2)`` patch shifts; their spread over patches is shaded.

    Returns
    -------
    Path
        ``out_png``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shifts = np.asarray(shifts, dtype=float).reshape(-1, 2)
    T = shifts.shape[0]
    t = np.arange(T) / fr if fr else np.arange(T)
    tlabel = "time (s)" if fr else "frame"
    fig = plt.figure(figsize=(12, 8), constrained_layout=True)
    gs = fig.add_gridspec(2, 3)
    ax = fig.add_subplot(gs[0, :2])
    for k, (name, col) in enumerate((("y (rows, + = down)", "tab:blue"), ("x (cols, + = right)", "tab:orange"))):
        ax.plot(t, shifts[:, k], lw=0.8, color=col, label=f"shift {name}")
        if pw_shifts is not None:
            p = np.asarray(pw_shifts, dtype=float).reshape(T, -1, 2)[..., k]
            ax.fill_between(t, p.min(axis=1), p.max(axis=1), color=col, alpha=0.2, lw=0)
    ax.set_xlabel(tlabel)
    ax.set_ylabel("registration shift (px)")
    title = "Rigid shifts" + (" (band: range over patches)" if pw_shifts is not None else "")
    ax.set_title(f"{title}; max |y| {np.nanmax(np.abs(shifts[:, 0])):.2f} px, "
                 f"max |x| {np.nanmax(np.abs(shifts[:, 1])):.2f} px")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)

    ax = fig.add_subplot(gs[0, 2])
    cb, ca = np.asarray(corr_before, float), np.asarray(corr_after, float)

    def _m(v):
        v = v[np.isfinite(v)]
        return f"{v.mean():.3f}" if v.size else "n/a"

    ax.plot(t, cb, lw=0.8, color="0.5", label=f"before (mean {_m(cb)})")
    ax.plot(t, ca, lw=0.8, color="tab:green", label=f"after (mean {_m(ca)})")
    ax.set_xlabel(tlabel)
    ax.set_ylabel("Pearson r with template")
    ax.set_title("Frame-template correlation")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)

    lo_b, hi_b = _limits(np.asarray(mean_before))
    lo_a, hi_a = _limits(np.asarray(mean_after))
    for j, (img, title, lim) in enumerate(((mean_before, "Mean image before correction", (lo_b, hi_b)),
                                           (mean_after, "Mean image after correction", (lo_a, hi_a)))):
        ax = fig.add_subplot(gs[1, j])
        im = ax.imshow(img, cmap="gray", vmin=lim[0], vmax=lim[1], interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
        fig.colorbar(im, ax=ax, shrink=0.8, label="intensity (a.u.)")
    ax = fig.add_subplot(gs[1, 2])
    ax.hist(np.hypot(shifts[:, 0], shifts[:, 1]), bins=40, color="tab:purple")
    ax.set_xlabel("|shift| (px)")
    ax.set_ylabel("frames")
    ax.set_title("Distribution of shift magnitude")
    fig.suptitle(f"Motion correction: {T} frames")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(os.fspath(out_png), dpi=90)
    plt.close(fig)
    return out_png


def plot_motion_dir(motion_dir, out_png, *, fr=None) -> Path:
    """Preview from a motion output folder (``motion.json``, ``shifts.csv``, ``mean_images.npz``)."""
    from cellextract.motion.run import load_motion_summary

    s = load_motion_summary(motion_dir)
    pw = None
    p = Path(motion_dir) / "shifts_pw.npz"
    if p.exists():
        with np.load(p) as z:
            pw = z["shifts"]
    return plot_motion(out_png, shifts=s["shifts"], mean_before=s["mean_before"], mean_after=s["mean_after"],
                       corr_before=s["corr_before"], corr_after=s["corr_after"], fr=fr, pw_shifts=pw)
