"""All output previews of one series (everything except the motion previews).

Files written in ``out_dir``::

    init_images.png
    cellset_raw.NNN.png, cellset_denoised.NNN.png, neural_events.NNN.png   per input file
    cellset_raw.series.png, cellset_denoised.series.png, neural_events.series.png
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cellextract.cnmf.estimates import Estimates
from cellextract.export.isxd_timing import normalize_files
from cellextract.export.run import series_invalid_mask
from cellextract.log import get_logger
from cellextract.previews.cells import plot_cells
from cellextract.previews.events import plot_events
from cellextract.previews.init_images import plot_init_images

__all__ = ["preview_names", "make_previews"]

log = get_logger(__name__)


def preview_names(n_files: int, *, with_init: bool = True) -> list[str]:
    """File names :func:`make_previews` writes for ``n_files`` inputs (for the workflow)."""
    names = ["init_images.png"] if with_init else []
    for tag in [f"{k:03d}" for k in range(n_files)] + ["series"]:
        names += [f"cellset_raw.{tag}.png", f"cellset_denoised.{tag}.png",
                  f"neural_events.{tag}.png"]
    return names


def _one(out: Path, tag: str, label: str, est: Estimates, *, fr: float, frames, invalid,
         boundaries, event_threshold: float) -> list[Path]:
    written = []
    for kind in ("raw", "denoised"):
        written.append(plot_cells(out / f"cellset_{kind}.{tag}.png", est, kind=kind, fr=fr,
                                  frames=frames, invalid=invalid, boundaries=boundaries,
                                  title=f"{kind.capitalize()} cell set, {label}"))
    written.append(plot_events(out / f"neural_events.{tag}.png", est, fr=fr, frames=frames,
                               invalid=invalid, boundaries=boundaries,
                               event_threshold=event_threshold,
                               title=f"Detected calcium events, {label}"))
    return written


def make_previews(out_dir: str | os.PathLike, est: Estimates, files: list[dict], *, fr: float,
                  pnr: np.ndarray | None = None, corr: np.ndarray | None = None,
                  event_threshold: float = 0.0, min_corr: float | None = None,
                  min_pnr: float | None = None) -> list[Path]:
    """Write every preview of a series.

    Parameters
    ----------
    out_dir : str or PathLike
        Directory of the PNGs (created if missing).
    est : Estimates
        Evaluated model over the concatenated series (K, T).
    files : list of dict
        Input file descriptions in the user's order (``path, start_frame, n_frames,
        period_s, invalid_mask, ...``), as for :func:`cellextract.export.isxd.export_isxd`.
    fr : float
        Series frame rate (Hz).
    pnr, corr : ndarray, shape (H, W), optional
        Initialisation images; ``init_images.png`` is written when both are given.
    event_threshold : float
        As for the event sets (noise units).
    min_corr, min_pnr : float or None
        Seed thresholds outlined on the initialisation images.

    Returns
    -------
    list of Path
        The PNGs written (names as :func:`preview_names`).
    """
    files = normalize_files(files)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if pnr is not None and corr is not None:
        written.append(plot_init_images(out / "init_images.png", pnr=pnr, corr=corr,
                                        min_corr=min_corr, min_pnr=min_pnr))
    inv = series_invalid_mask(files, est.n_frames)
    for k, f in enumerate(files):
        s, n = int(f["start_frame"]), int(f["n_frames"])
        ffr = 1.0 / f["period_s"] if f.get("period_s") else fr
        written += _one(out, f"{k:03d}", f"file {k + 1} of {len(files)} "
                        f"({Path(str(f['path'])).name})", est, fr=ffr, frames=(s, s + n),
                        invalid=inv[s:s + n], boundaries=(), event_threshold=event_threshold)
    starts = [int(f["start_frame"]) / fr for f in files]
    written += _one(out, "series", f"whole series ({len(files)} files)", est, fr=fr,
                    frames=None, invalid=inv, boundaries=starts if len(files) > 1 else (),
                    event_threshold=event_threshold)
    log.info("wrote %d previews to %s", len(written), out)
    return written
