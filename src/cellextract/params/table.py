"""The spec's analysis table: defaults, the 1P/2P preset columns and flat-name lookup.

Defaults are the SPEC's (they differ from CaImAn's, e.g. ``min_pnr`` 12, ``nb`` 0,
``rf`` 40). Parameters the spec does not list keep CaImAn's defaults. ``'auto'``
and None mark values that the loader resolves (``fr``, ``K``, ``gSiz``).
"""

from __future__ import annotations

import difflib
from typing import Any

from cellextract.errors import ParameterError
from cellextract.params.groups import ALIASES, GROUP_NAMES, group_fields

__all__ = ["SPEC_DEFAULTS", "PRESETS", "PRIMARY_GROUP", "flat_keys", "group_of", "suggest",
           "all_names"]

SPEC_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"fr": "auto", "decay_time": 0.4, "dxy": 1.0},
    "motion": {
        "motion_correct": True, "pw_rigid": False, "gSig_filt": 3, "max_shifts": 5,
        "strides": 48, "overlaps": 24, "max_deviation_rigid": 3, "border_nan": "copy",
        # CaImAn defaults (not in the spec's table)
        "niter_rig": 1, "upsample_factor_grid": 4, "splits_rig": 14, "splits_els": 14,
        "num_frames_split": 80,
    },
    "init": {
        "K": "auto", "gSig": 3, "gSiz": None, "ssub": 1, "tsub": 2, "method_init": "corr_pnr",
        "min_corr": 0.85, "min_pnr": 12.0, "ssub_B": 2, "ring_size_factor": 1.4, "nb": 0,
        "rolling_sum": True, "normalize_init": False, "center_psf": True,
        # CaImAn defaults (not in the spec's table)
        "rolling_length": 100, "init_iter": 2, "alpha_snmf": 0.5, "max_iter_snmf": 500,
    },
    "preprocess": {"p": 1, "noise_method": "mean", "noise_range": [0.25, 0.5], "lags": 5,
                   "max_num_samples_fft": 3072},
    "temporal": {"p": 1, "method_deconvolution": "oasis", "bas_nonneg": False},
    "spatial": {"update_background_components": True},
    "patch": {
        "rf": 40, "stride": 20, "only_init": True, "nb_patch": 0, "low_rank_background": False,
        "del_duplicates": True, "border_pix": 0, "n_processes": 7,
    },
    "merging": {"merge_thr": 0.7},
    "quality": {
        "min_SNR": 3.0, "SNR_lowest": 0.5, "rval_thr": 0.85, "rval_lowest": -1.0, "use_cnn": False,
        "min_cnn_thr": 0.9, "cnn_lowest": 0.1, "gSig_range": None,
        # ours (not in the spec or CaImAn): see cellextract.evaluate.events
        "max_event_pval": 0.01,
    },
    "workflow": {"refit": False, "event_threshold": 0.0, "export_nwb": False, "temp_memmap": False,
                 "overwrite_params": False},
}

#: The spec's "1P vs 2P" table (flat names).
PRESETS: dict[str, dict[str, Any]] = {
    "1p": {"gSig_filt": 3, "K": "auto", "method_init": "corr_pnr", "del_duplicates": True, "nb": 0,
           "low_rank_background": False, "nb_patch": 0, "normalize_init": False, "center_psf": True,
           "bas_nonneg": False, "use_cnn": False},
    "2p": {"gSig_filt": None, "K": 4, "method_init": "greedy_roi", "del_duplicates": False, "nb": 2,
           "low_rank_background": True, "nb_patch": 1, "normalize_init": True, "center_psf": False,
           "bas_nonneg": True, "use_cnn": True,
           # ours, not the spec's: in 2P the CNN rejects what the transient test would, and
           # the test cost a real low-SNR neuron on bench_2p (bench/RESULTS_evaluate.md)
           "max_event_pval": None},
}

#: Flat names that exist in several groups map to this group.
PRIMARY_GROUP: dict[str, str] = {"p": "preprocess", "nb": "init"}


def flat_keys() -> dict[str, str]:
    """Return the mapping flat parameter name -> group (duplicates map to their primary group)."""
    out: dict[str, str] = {}
    for group in GROUP_NAMES:
        for key in group_fields(group):
            out.setdefault(key, PRIMARY_GROUP.get(key, group))
    return out


def all_names() -> list[str]:
    """Return every accepted name, flat (``gSig``) and qualified (``init.gSig``)."""
    names = list(flat_keys())
    names += [f"{g}.{k}" for g in GROUP_NAMES for k in group_fields(g)]
    names += [f"{g}.{k}" for g, k in ALIASES]
    return names


def suggest(name: str, candidates: list[str] | tuple[str, ...], *, n: int = 3) -> str:
    """Return ``"; did you mean 'a', 'b'?"`` for the closest candidates, or ``''``.

    Matching ignores case, so ``gsig`` suggests ``gSig``.
    """
    lower = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.6)
    if not hits:
        return ""
    return "; did you mean " + ", ".join(repr(lower[h]) for h in hits) + "?"


def group_of(name: str, *, where: str = "parameters") -> tuple[str, str]:
    """Return ``(group, key)`` for a flat (``gSig``) or qualified (``init.gSig``) name.

    Parameters
    ----------
    name : str
        The parameter name.
    where : str
        Where the name came from, used in the error message.

    Raises
    ------
    ParameterError
        If the name (or its group) is unknown; the message names the closest valid names.
    """
    if "." in name:
        group, key = name.split(".", 1)
        if group not in GROUP_NAMES:
            raise ParameterError(f"{where}: unknown parameter group {group!r} in {name!r}"
                                 f"{suggest(group, GROUP_NAMES)} (groups: {', '.join(GROUP_NAMES)})")
        if (group, key) in ALIASES:
            return ALIASES[(group, key)]
        if key not in group_fields(group):
            raise ParameterError(f"{where}: unknown parameter {name!r}"
                                 f"{suggest(key, group_fields(group)) or suggest(name, all_names())}")
        return group, key
    flat = flat_keys()
    if name not in flat:
        raise ParameterError(f"{where}: unknown parameter {name!r}{suggest(name, list(flat))}")
    return flat[name], name
