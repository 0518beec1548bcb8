# Helpers shared by the rules: output paths, series lookups, per-stage parameters, resources.
import json
import os
import re

from cellextract.pipeline import snake as ce


# The project folder, for the conda environments (envs/*.yaml install it with pip -e).
os.environ.setdefault("CELLEXTRACT_ROOT", workflow.basedir)

RESULTS = config.get("results", "results")
SERIES = list(config["series"])


wildcard_constraints:
    series="|".join(re.escape(s) for s in SERIES),
    k=r"\d{3}",


localrules:
    all,
    resolve_params,
    motion_summary,


def res(*parts):
    """Path under the results root."""
    return os.path.normpath(os.path.join(RESULTS, *parts))


def series_files(wildcards):
    return config["series"][wildcards.series]


def n_files(series):
    return len(config["series"][series])


def stage_params(stage):
    """Parameters a stage depends on (changing them reruns that stage and what follows)."""
    return ce.stage_params(config, stage)


def indexed(series, pattern):
    return [res(series, pattern.format(k=k)) for k in range(n_files(series))]


def all_outputs():
    out = []
    for s in SERIES:
        out += [res(s, "series.json"), res(s, "params.json"), res(s, "caiman_output.hdf5"),
                res(s, "output_metadata.json"), res(s, "previews")]
        out += indexed(s, "cellset_raw.{k:03d}.isxd")
        out += indexed(s, "cellset_denoised.{k:03d}.isxd")
        out += indexed(s, "neural_events.{k:03d}.isxd")
        if config.get("export_nwb", False):
            out.append(res(s, "cells.nwb"))
    return out
