"""Validation of the motion-correction keywords (CaImAn's ``motion`` group meanings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from cellextract.errors import ParameterError
from cellextract.motion.apply import check_border_nan


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def int_pair(value, key: str, *, minimum: int) -> tuple[int, int]:
    """Return ``value`` (int or pair of ints) as a pair, each ``>= minimum``."""
    vals = [value, value] if np.ndim(value) == 0 else list(value) if np.ndim(value) == 1 else None
    if vals is None or len(vals) != 2 or not all(_is_int(v) or (isinstance(v, float) and v.is_integer()) for v in vals):
        raise ParameterError(f"motion.{key}: expected an integer or a pair of integers, got {value!r}")
    a, b = int(vals[0]), int(vals[1])
    if a < minimum or b < minimum:
        raise ParameterError(f"motion.{key}: must be >= {minimum}, got {value!r}")
    return a, b


def _int(value, key: str, *, minimum: int) -> int:
    if not (_is_int(value) or (isinstance(value, float) and value.is_integer())):
        raise ParameterError(f"motion.{key}: expected an integer, got {value!r}")
    if int(value) < minimum:
        raise ParameterError(f"motion.{key}: must be >= {minimum}, got {value!r}")
    return int(value)


def _bool(value, key: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"motion.{key}: expected true or false, got {value!r}")
    return bool(value)


@dataclass(frozen=True)
class MotionParams:
    """Validated motion-correction parameters (pixels unless stated)."""

    motion_correct: bool = True
    pw_rigid: bool = False
    gSig_filt: tuple[float, float] | None = None
    max_shifts: tuple[int, int] = (5, 5)
    strides: tuple[int, int] = (48, 48)
    overlaps: tuple[int, int] = (24, 24)
    max_deviation_rigid: int = 3
    border_nan: bool | str = "copy"
    niter_rig: int = 1
    upsample_factor_grid: int = 4
    n_processes: int = 1
    chunk_frames: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def check_params(dims=None, **kw) -> MotionParams:
    """Validate motion keywords; raise :class:`ParameterError` naming the bad key.

    Parameters
    ----------
    dims : (int, int), optional
        Frame size; when given, shifts and patches are checked against it.
    **kw
        Fields of :class:`MotionParams`.

    Returns
    -------
    MotionParams
    """
    unknown = set(kw) - set(MotionParams.__dataclass_fields__)
    if unknown:
        raise ParameterError(f"motion: unknown parameter(s) {sorted(unknown)}")
    p = MotionParams(**kw)
    g = p.gSig_filt
    if g is not None:
        vals = [g, g] if np.ndim(g) == 0 else list(g)
        try:
            gy, gx = (float(v) for v in vals)
        except (TypeError, ValueError):
            raise ParameterError(f"motion.gSig_filt: expected a number, a pair or null, got {g!r}") from None
        if not (gy > 0 and gx > 0) or isinstance(g, bool):
            raise ParameterError(f"motion.gSig_filt: must be > 0 (or null for no filtering), got {g!r}")
        g = (gy, gx)
    out = {
        "motion_correct": _bool(p.motion_correct, "motion_correct"),
        "pw_rigid": _bool(p.pw_rigid, "pw_rigid"),
        "gSig_filt": g,
        "max_shifts": int_pair(p.max_shifts, "max_shifts", minimum=0),
        "strides": int_pair(p.strides, "strides", minimum=1),
        "overlaps": int_pair(p.overlaps, "overlaps", minimum=0),
        "max_deviation_rigid": _int(p.max_deviation_rigid, "max_deviation_rigid", minimum=0),
        "border_nan": check_border_nan(p.border_nan),
        "niter_rig": _int(p.niter_rig, "niter_rig", minimum=1),
        "upsample_factor_grid": _int(p.upsample_factor_grid, "upsample_factor_grid", minimum=1),
        "n_processes": _int(p.n_processes, "n_processes", minimum=1),
        "chunk_frames": None if p.chunk_frames is None else _int(p.chunk_frames, "chunk_frames", minimum=1),
    }
    s, o = out["strides"], out["overlaps"]
    if out["pw_rigid"] and (s[0] <= o[0] or s[1] <= o[1]):
        raise ParameterError(f"motion.strides: must be larger than motion.overlaps, got strides={list(s)}, "
                             f"overlaps={list(o)}")
    if dims is not None:
        H, W = int(dims[0]), int(dims[1])
        ms = out["max_shifts"]
        if out["motion_correct"] and (2 * ms[0] + 2 >= H or 2 * ms[1] + 2 >= W):
            raise ParameterError(f"motion.max_shifts: {list(ms)} too large for {H}x{W} frames "
                                 f"(allowed < {(H - 2) // 2}, {(W - 2) // 2})")
        if out["motion_correct"] and out["pw_rigid"]:
            ph, pw = min(H, s[0] + o[0]), min(W, s[1] + o[1])
            need = [2 * (m + out["max_deviation_rigid"]) + 2 for m in ms]
            if ph <= need[0] or pw <= need[1]:
                raise ParameterError(f"motion.strides+overlaps: patches of {ph}x{pw} px are too small for "
                                     f"max_shifts={list(ms)} + max_deviation_rigid={out['max_deviation_rigid']}"
                                     f" (need > {need[0]}x{need[1]})")
    return MotionParams(**out)
