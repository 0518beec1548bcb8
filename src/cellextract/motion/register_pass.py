"""Pass 1 of motion correction (see :mod:`cellextract.motion.run`): the template from sample
frames, then every chunk of frames registered by the worker threads — rigid (and patch)
shifts, QC correlation before correction, each raw frame's range and the raw mean sums,
gathered with memory independent of the movie length."""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np

from cellextract.errors import InputError
from cellextract.log import Progress, get_logger
from cellextract.motion.correct import Corrector
from cellextract.motion.output import pwrite_all
from cellextract.motion.params import MotionParams
from cellextract.motion.template import read_samples, rigid_template
from cellextract.motion.workers import Workers

__all__ = ["make_template", "register_all", "register_chunk"]

log = get_logger(__name__)

N_TEMPLATE_FRAMES = 200
TEMPLATE_BYTES = 80 << 20  # at most this much of sample frames (80 frames at 512 x 512)


def _frame_range(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(n,)`` minimum and maximum of the finite values of each frame (NaN if none), and
    whether the frame has non-finite pixels."""
    flat = raw.reshape(raw.shape[0], -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    bad = ~(np.isfinite(lo) & np.isfinite(hi))
    if bad.any():
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo[bad] = np.nanmin(np.where(np.isfinite(flat[bad]), flat[bad], np.nan), axis=1)
            hi[bad] = np.nanmax(np.where(np.isfinite(flat[bad]), flat[bad], np.nan), axis=1)
    return lo.astype(np.float64), hi.astype(np.float64), bad


def register_chunk(reader, corrector: Corrector, start: int, stop: int, sub: int, scratch: str | None) -> dict:
    """Register frames ``start:stop``: shifts, QC correlations, raw range and raw mean sums.

    With ``scratch`` the raw frames are also copied (float32, frame-major) to that file,
    for inputs the second pass cannot read in place.
    """
    H, W = corrector.dims
    sum_b = np.zeros((H, W))
    cnt_b = np.zeros((H, W))
    shifts, pws, cb, ca, lo, hi, bad = [], [], [], [], [], [], []
    fd = os.open(scratch, os.O_WRONLY) if scratch else None
    try:
        for s0 in range(start, stop, sub):
            s1 = min(stop, s0 + sub)
            raw = np.asarray(reader.read(s0, s1), dtype=np.float32)
            if raw.shape != (s1 - s0, H, W):
                raise InputError(f"reader returned frames of shape {raw.shape} for {s0}:{s1}, expected {(s1 - s0, H, W)}")
            res = corrector.register(raw, after=False)  # after: from the written bands
            tot = raw.sum(axis=0)  # float32 over a sub-batch (pairwise), float64 across
            if np.isfinite(tot).all():  # no NaN/inf anywhere (they propagate into the sum)
                sum_b += tot
                cnt_b += raw.shape[0]
            else:
                fin = np.isfinite(raw)
                sum_b += np.where(fin, raw, 0).sum(axis=0, dtype=np.float64)
                cnt_b += fin.sum(axis=0)
            a, b, c = _frame_range(raw)
            lo.append(a)
            hi.append(b)
            bad.append(c)
            if fd is not None:
                pwrite_all(fd, raw, s0 * H * W * 4)
            shifts.append(res.shifts)
            cb.append(res.corr_before)
            ca.append(res.corr_after)
            if res.pw_shifts is not None:
                pws.append(res.pw_shifts)
    finally:
        if fd is not None:
            os.close(fd)
    return {"start": start, "stop": stop, "shifts": np.concatenate(shifts),
            "pw": np.concatenate(pws) if pws else None,
            "corr_before": np.concatenate(cb), "corr_after": np.concatenate(ca),
            "fmin": np.concatenate(lo), "fmax": np.concatenate(hi), "fnan": np.concatenate(bad), "sum_b": sum_b, "cnt_b": cnt_b}


def _tuple_fix(p: MotionParams) -> dict:
    """Parameters as tuples again (for ``MotionParams(**d)`` in workers)."""
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in p.to_dict().items()}


def make_template(workers: Workers, rd, p: MotionParams, batch: int = 32) -> np.ndarray:
    H, W = rd.dims
    samples = read_samples(rd, max(50, min(N_TEMPLATE_FRAMES, TEMPLATE_BYTES // (4 * H * W))),
                           map_fn=workers.map, reader_fn=workers.reader)
    finite = np.isfinite(samples).reshape(samples.shape[0], -1).all(axis=1)
    if finite.any() and not finite.all():
        samples = samples[finite]
    if not p.motion_correct:
        return np.nan_to_num(np.nanmean(samples, axis=0)).astype(np.float32)
    template, _ = rigid_template(samples, max_shifts=p.max_shifts, gSig_filt=p.gSig_filt, niter_rig=p.niter_rig,
                                 map_fn=workers.map)
    if p.pw_rigid:  # one piecewise-rigid refinement of the template
        c = Corrector(template, MotionParams(**(_tuple_fix(p) | {"border_nan": "copy"})))
        sums = workers.map(lambda i: c.correct(samples[i:i + batch]).frames.sum(axis=0, dtype=np.float64),
                           range(0, samples.shape[0], batch))
        template = (sum(sums) / samples.shape[0]).astype(np.float32)
    return template


def register_all(workers: Workers, p: MotionParams, template, ranges, sub: int, scratch) -> dict:
    """Pass 1 over all chunks: per-frame arrays and running sums (memory independent of T)."""
    T = ranges[-1][1]
    prog = Progress(T, "frames", log)

    engines: dict = {}  # one registration engine per thread, freed with this pass

    def chunk(rng):
        eng = engines.get(threading.get_ident())
        if eng is None:
            eng = engines[threading.get_ident()] = Corrector(template, p)
        return register_chunk(workers.reader(), eng, rng[0], rng[1], sub, scratch)

    keys = ("shifts", "corr_before", "corr_after", "fmin", "fmax", "fnan")
    acc: dict = {k: [] for k in keys + ("pw",)}
    for r in workers.map(chunk, ranges):
        for k in ("sum_b", "cnt_b"):
            if k in acc:
                acc[k] += r[k]
            else:
                acc[k] = r[k].copy()
        for k in keys:
            acc[k].append(r[k])
        if r["pw"] is not None:
            acc["pw"].append(r["pw"])
        prog.update(r["stop"] - r["start"], "registering")
    for k in keys:
        acc[k] = np.concatenate(acc[k])
    acc["pw"] = np.concatenate(acc["pw"]) if acc["pw"] else None
    engines.clear()
    return acc
