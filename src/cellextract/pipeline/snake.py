"""Helpers evaluated inside the Snakefile (paths, stage parameters, resources).

Kept here, not in the ``.smk`` files, so they are unit-tested without Snakemake.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache

# Parameter groups each stage depends on: changing any of them reruns the stage and what
# follows it, and nothing else. Entries are (group, key) with key None for the whole group.
STAGE_KEYS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "motion": (("motion", None),),
    "cnmf": (("data", None), ("init", None), ("preprocess", None), ("temporal", None),
             ("spatial", None), ("patch", None), ("merging", None), ("workflow", "refit")),
    "evaluate": (("data", None), ("init", "gSig"), ("quality", None)),
    "export": (("data", "fr"), ("workflow", "event_threshold")),
    "previews": (("data", "fr"), ("workflow", "event_threshold")),
    "all": (),
}

# Parameters that change how fast a stage runs, never its result.
_NOT_RESULT = {("patch", "n_processes")}


def _freeze(obj):
    return json.dumps(obj, sort_keys=True)


@lru_cache(maxsize=32)
def _resolved(frozen_cfg: str) -> dict:
    import logging

    from cellextract.pipeline.config import resolve_from_config

    # fr may be 'auto' here: each stage resolves it from the movie's metadata, so the
    # "no metadata, using 30 Hz" warning does not apply at planning time.
    logger = logging.getLogger("cellextract.params")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        params = resolve_from_config(json.loads(frozen_cfg), metadata_fr=None)
    finally:
        logger.setLevel(level)
    out = params.to_dict()
    if params.sources.get("data.fr", "").startswith("auto"):
        out["data"]["fr"] = "auto"  # resolved from the movie's metadata by each stage
    return out


def stage_params(config: dict, stage: str) -> dict:
    """Resolved parameters (grouped, JSON types) that ``stage`` depends on.

    Parameters
    ----------
    config : dict
        The workflow configuration (``config/config.yaml`` after validation).
    stage : str
        One of ``STAGE_KEYS``; ``"all"`` returns every group.

    Returns
    -------
    dict
        ``{group: {key: value}}``; ``data.fr`` is ``"auto"`` when it comes from metadata.
    """
    if stage not in STAGE_KEYS:
        raise KeyError(f"unknown stage {stage!r}; known: {sorted(STAGE_KEYS)}")
    full = _resolved(_freeze({k: config.get(k) for k in
                              ("params", "params_file", "overwrite_params", "preset",
                               "n_processes", "export_nwb", "temp_memmap")}))
    if stage == "all":
        return full
    out: dict = {}
    for group, key in STAGE_KEYS[stage]:
        values = full.get(group, {})
        items = values.items() if key is None else [(key, values.get(key))]
        for k, v in items:
            if (group, k) in _NOT_RESULT:
                continue
            out.setdefault(group, {})[k] = v
    return out


def memmap_basename(series: str, info: dict) -> str:
    """CaImAn memmap file name of a series from its ``series.json`` description."""
    H, W = info["dims"]
    return f"{series}_d1_{H}_d2_{W}_d3_1_order_C_frames_{total_frames(info)}.mmap"


def total_frames(info: dict) -> int:
    """Frames of the concatenated series (``n_frames`` is per file in ``series.json``)."""
    n = info["n_frames"]
    return int(sum(n)) if isinstance(n, (list, tuple)) else int(n)


def threads(config: dict) -> int:
    """Threads for the parallel stages: ``n_processes``.

    Not capped here: Snakemake caps threads at ``--cores`` on a local run, and on a cluster
    the job's node, not the submitting host, decides (profiles may ``set-threads``).
    """
    return max(1, int(config.get("n_processes", 1) or 1))


def maybe_temp(config: dict, path):
    """Wrap ``path`` in Snakemake's ``temp()`` when ``config['temp_memmap']`` is set."""
    if config.get("temp_memmap", False):
        from snakemake.io import temp

        return temp(path)
    return path


def movie_mb(series_json: str) -> float:
    """Size in MB of the series as float32 frames (H * W * T * 4 bytes)."""
    try:
        with open(series_json) as fh:
            info = json.load(fh)
        H, W = info["dims"]
        return H * W * total_frames(info) * 4 / 1e6
    except (OSError, KeyError, ValueError):
        return 0.0


def _file_mb(path: str) -> float:
    try:
        return os.path.getsize(path) / 1e6
    except OSError:
        return 0.0


# Memory model per stage: base MB + factor * (input MB) [+ per worker process MB, see
# _MEM_PER_PROCESS]. Measured in bench/ (see RESULTS.md).
_MEM_MODEL = {
    "motion": (400.0, 0.25),
    "cnmf": (2000.0, 0.6),
    "evaluate": (1500.0, 2.0),
    "export": (1000.0, 3.0),
    "previews": (1500.0, 3.0),
}
# motion: one band buffer shared by the worker threads (a quarter of the movie at most,
# capped at 460 MB) + registration work arrays per thread; ~0.9 GB for 2 threads whatever
# the movie length (bench/RESULTS_motion.md)
_MEM_PER_PROCESS = {"motion": 80.0}  # per worker thread
_MEM_CAP = {"motion": 460.0}  # cap of the size-dependent term (the band buffer)
_RUNTIME_MODEL = {  # minutes: base + per GB of movie
    "motion": (10.0, 5.0),
    "cnmf": (20.0, 30.0),
    "evaluate": (10.0, 5.0),
}


def mem_mb(stage: str, path: str, attempt: int = 1, threads: int = 2) -> int:
    """Memory request (MB) for ``stage`` given its main input and the rule's threads
    (worker processes); grows 50 % per retry."""
    base, factor = _MEM_MODEL[stage]
    base += _MEM_PER_PROCESS.get(stage, 0.0) * max(1, int(threads))
    size = movie_mb(path) if path.endswith(".json") else _file_mb(path)
    grow = min(factor * size, _MEM_CAP.get(stage, math.inf))
    return int((base + grow) * (1.0 + 0.5 * (attempt - 1)))


def runtime_min(stage: str, path: str, attempt: int = 1) -> int:
    """Run-time request (minutes) for ``stage``; doubles per retry."""
    base, per_gb = _RUNTIME_MODEL[stage]
    size = movie_mb(path) if path.endswith(".json") else _file_mb(path)
    return int((base + per_gb * size / 1000.0) * attempt)
