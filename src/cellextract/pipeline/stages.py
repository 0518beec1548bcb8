"""One function per workflow stage: files in, files out.

The Snakemake scripts in ``workflow/scripts/`` are thin calls to these functions, which are
unit-tested without Snakemake. Each stage takes the resolved parameters it depends on (a
grouped dict, see :func:`cellextract.pipeline.snake.stage_params`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cellextract.errors import InputError, NoComponentsError
from cellextract.log import get_logger
from cellextract.pipeline.config import params_from_stage

log = get_logger(__name__)


def _series(series_json):
    from cellextract.io import SeriesInfo

    return SeriesInfo.from_json(series_json)


def find_memmap(motion_dir: str | Path) -> Path:
    """The single CaImAn memmap inside a motion folder."""
    found = sorted(Path(motion_dir).glob("*_order_C_frames_*.mmap"))
    if len(found) != 1:
        raise InputError(f"{motion_dir}: expected one motion-corrected memmap, found {len(found)}")
    return found[0].resolve()


def concatenate(files: list[str], out_json: str | Path) -> None:
    """Validate a movie series and write its description (``series.json``)."""
    from cellextract.io import load_series

    info = load_series(files)
    info.to_json(out_json)
    log.info("series of %d file(s): %d frames of %s px at %s Hz", len(files), info.total_frames,
             info.dims, info.fr)


def resolve_params(series_json: str | Path, stage: dict, out_json: str | Path) -> None:
    """Write the run's resolved parameters with their sources (``params.json``)."""
    info = _series(series_json)
    params = params_from_stage(stage, metadata_fr=info.fr)
    params.to_json(out_json)


def motion_correct(series_json: str | Path, out_dir: str | Path, name: str, stage: dict, *,
                   n_processes: int = 1) -> None:
    """Register the series and write the CaImAn memmap plus shifts into ``out_dir``."""
    from cellextract.io import open_series
    from cellextract.motion.run import motion_correct as run

    info = _series(series_json)
    m = params_from_stage(stage, metadata_fr=info.fr).motion
    with open_series(info) as reader:
        run(reader, out_dir, name, motion_correct=m.motion_correct, pw_rigid=m.pw_rigid,
            gSig_filt=m.gSig_filt, max_shifts=m.max_shifts, strides=m.strides,
            overlaps=m.overlaps, max_deviation_rigid=m.max_deviation_rigid,
            border_nan=m.border_nan, niter_rig=m.niter_rig,
            upsample_factor_grid=m.upsample_factor_grid, n_processes=n_processes)


def cnmf_fit(series_json: str | Path, motion_dir: str | Path, out_fit: str | Path,
             out_summary: str | Path, stage: dict, *, n_processes: int = 1) -> None:
    """Run CNMF / CNMF-E on the memmap; write the model and the summary images."""
    from cellextract.cnmf.estimates import Estimates
    from cellextract.cnmf.fit import fit_cnmf
    from cellextract.export.caiman_hdf5 import save_estimates
    from cellextract.io.memmap import parse_memmap_name

    info = _series(series_json)
    params = params_from_stage(stage, metadata_fr=info.fr)
    mmap = find_memmap(motion_dir)
    t0 = time.perf_counter()
    try:
        est = fit_cnmf(str(mmap), params=params, n_processes=n_processes)
    except NoComponentsError as exc:
        log.warning("no components found: %s; writing an empty model", exc)
        dims, T = parse_memmap_name(mmap)
        import scipy.sparse as sp

        est = Estimates(A=sp.csc_matrix((dims[0] * dims[1], 0), dtype=np.float32),
                        C=np.zeros((0, T), np.float32), dims=dims,
                        S=np.zeros((0, T), np.float32), YrA=np.zeros((0, T), np.float32))
        est.extra.update(exc_summary_images(mmap, params))
    log.info("cnmf_fit: %d components in %.1f s", est.n_components, time.perf_counter() - t0)
    cn = est.extra.get("cn", est.Cn)
    pnr = est.extra.get("pnr")
    shape = tuple(est.dims)
    cn = np.zeros(shape, np.float32) if cn is None else np.asarray(cn, np.float32)
    pnr = np.zeros(shape, np.float32) if pnr is None else np.asarray(pnr, np.float32)
    if est.Cn is None:
        est.Cn = cn
    _save_npz(out_summary, correlation=cn, pnr=pnr, search=cn * pnr)
    save_estimates(out_fit, est, params=_recorded_params(params, motion_dir),
                   mmap_file=str(mmap))


def _recorded_params(params, motion_dir) -> dict:
    """Parameters to store with the model: this stage's, plus the motion stage's own record."""
    pdict = params.to_dict()
    try:
        done = json.loads((Path(motion_dir) / "motion.json").read_text()).get("params", {})
    except (OSError, ValueError):
        done = {}
    motion = pdict.setdefault("motion", {})
    for key, value in done.items():
        if key in motion:
            motion[key] = value
    return pdict


def exc_summary_images(mmap, params) -> dict:
    """Correlation and PNR images of a memmap (for results with no components)."""
    from cellextract.cnmf.summary import correlation_pnr_memmap
    from cellextract.io.memmap import open_memmap

    Yr, dims, _ = open_memmap(mmap)
    cn, pnr = correlation_pnr_memmap(Yr, dims, gSig=params.init.gSig,
                                     center_psf=params.init.center_psf)
    return {"cn": cn, "pnr": pnr}


def _save_npz(path, **arrays) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def evaluate(series_json: str | Path, fit: str | Path, motion_dir: str | Path,
             out_model: str | Path, stage: dict, *, n_processes: int = 1) -> None:
    """Accept / reject components; write ``caiman_output.hdf5``."""
    from cellextract.evaluate import evaluate_with_params
    from cellextract.export.caiman_hdf5 import load_estimates, save_estimates
    from cellextract.io.memmap import open_memmap

    info = _series(series_json)
    params = params_from_stage(stage, metadata_fr=info.fr)
    est, params_dict, extra = load_estimates(fit)
    Yr, _, _ = open_memmap(find_memmap(motion_dir))
    est = evaluate_with_params(est, Yr, params, n_processes=n_processes)
    params_dict = dict(params_dict)
    params_dict["quality"] = params.to_dict()["quality"]
    save_estimates(out_model, est, params=params_dict, mmap_file=str(find_memmap(motion_dir)),
                   extra=extra)
    n_acc = 0 if est.idx_components is None else len(est.idx_components)
    log.info("evaluate: %d of %d components accepted", n_acc, est.n_components)


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    tmp.replace(path)


def export_files(info, *, fr: float) -> list[dict]:
    """Per input file (user order), the description the exporters take.

    Parameters
    ----------
    info : cellextract.io.SeriesInfo
        The validated series.
    fr : float
        Resolved frame rate (Hz), used for files without their own timing.
    """
    mask = info.invalid_mask
    out = []
    for k, path in enumerate(info.files):
        start, stop = info.frame_ranges[k]
        fr_k = (info.frame_rates[k] if info.frame_rates and info.frame_rates[k] else fr)
        out.append({"path": path, "start_frame": int(start), "n_frames": int(stop - start),
                    "period_s": 1.0 / float(fr_k), "fr": float(fr_k),
                    "start_time_s": info.start_times[k] if info.start_times else None,
                    "invalid_mask": mask[start:stop],
                    "is_isxd": (info.formats[k] == "isxd") if info.formats
                    else str(path).lower().endswith(".isxd")})
    return out


def export_cellsets(series_json: str | Path, model: str | Path, k: int, out_raw: str | Path,
                    out_denoised: str | Path, out_events: str | Path, stage: dict) -> None:
    """Write the raw and denoised cell sets and the event set of input file ``k``."""
    import shutil
    import tempfile

    from cellextract.export.caiman_hdf5 import load_estimates
    from cellextract.export.isxd import export_isxd, output_names

    info = _series(series_json)
    params = params_from_stage(stage, metadata_fr=info.fr)
    est, _, _ = load_estimates(model)
    files = export_files(info, fr=params.data.fr)
    if not 0 <= k < len(files):
        raise InputError(f"{series_json}: no input file number {k} (series has {len(files)})")
    file = dict(files[k])
    s, n = file["start_frame"], file["n_frames"]
    est_k = _frames_slice(est, s, s + n)
    file["start_frame"] = 0
    finals = {"raw": Path(out_raw), "denoised": Path(out_denoised), "events": Path(out_events)}
    tmpdir = Path(tempfile.mkdtemp(prefix=f".export{k:03d}.", dir=finals["raw"].parent))
    try:
        written = export_isxd(tmpdir, est_k, [file],
                              event_threshold=params.workflow.event_threshold)[0]
        names = output_names(0)
        for key in finals:
            shutil.move(str(written.get(key, tmpdir / names[key])), finals[key])
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _frames_slice(est, start: int, stop: int):
    """Copy of ``est`` with the per-frame arrays restricted to frames ``[start, stop)``."""
    import dataclasses

    changes = {}
    for name in ("C", "S", "YrA", "f"):
        v = getattr(est, name)
        if v is not None:
            changes[name] = np.asarray(v)[:, start:stop]
    return dataclasses.replace(est, **changes)


def output_metadata(series_json: str | Path, model: str | Path, out_json: str | Path) -> None:
    """Write ``output_metadata.json``: component counts and per-file timing."""
    from cellextract.export.caiman_hdf5 import load_estimates
    from cellextract.export.metadata import write_output_metadata

    info = _series(series_json)
    est, params, _ = load_estimates(model)
    fr = (params.get("data") or {}).get("fr") or info.fr or 30.0
    write_output_metadata(out_json, est, export_files(info, fr=float(fr)))


def export_nwb(series_json: str | Path, model: str | Path, out_nwb: str | Path) -> None:
    """Write the cells, traces and deconvolved activity as NWB."""
    from datetime import datetime, timezone

    from cellextract.export.caiman_hdf5 import load_estimates
    from cellextract.export.nwb import write_nwb

    info = _series(series_json)
    est, params, _ = load_estimates(model)
    data = params.get("data") or {}
    fr = data.get("fr") or info.fr or 30.0
    starts = [t for t in (info.start_times or []) if t is not None]
    start = datetime.fromtimestamp(min(starts), tz=timezone.utc) if starts else None
    write_nwb(out_nwb, est, fr=float(fr), dims=tuple(est.dims), dxy=data.get("dxy"),
              session_start_time=start, invalid=info.invalid_mask)


def previews(series_json: str | Path, model: str | Path, summary: str | Path,
             motion_dir: str | Path, out_dir: str | Path, stage: dict) -> None:
    """Write every preview PNG of a series into ``out_dir``."""
    from cellextract.export.caiman_hdf5 import load_estimates
    from cellextract.previews.run import make_previews

    info = _series(series_json)
    params = params_from_stage(stage, metadata_fr=info.fr)
    est, pdict, _ = load_estimates(model)
    init = pdict.get("init") or {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with np.load(summary) as z:
        pnr, corr = z["pnr"], z["correlation"]
    make_previews(out, est, export_files(info, fr=params.data.fr), fr=params.data.fr,
                  pnr=pnr, corr=corr, event_threshold=params.workflow.event_threshold,
                  min_corr=init.get("min_corr"), min_pnr=init.get("min_pnr"))
    motion_preview(motion_dir, out / "motion.png", fr=params.data.fr)


def motion_preview(motion_dir: str | Path, out_png: str | Path, *, fr: float) -> None:
    """The motion-correction preview from the files the motion stage wrote."""
    import pandas as pd

    from cellextract.previews.motion import plot_motion

    motion_dir = Path(motion_dir)
    shifts = pd.read_csv(motion_dir / "shifts.csv")[["shift_y", "shift_x"]].to_numpy()
    with np.load(motion_dir / "mean_images.npz") as z:
        plot_motion(out_png, shifts=shifts, mean_before=z["mean_before"],
                    mean_after=z["mean_after"], corr_before=z["corr_before"],
                    corr_after=z["corr_after"], fr=fr)
