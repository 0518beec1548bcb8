"""Parameters of the workflow: CaImAn's groups with the spec's defaults.

Use :func:`resolve_params` to build a :class:`Params` from the analysis table, an
optional JSON parameter file, a 1P/2P preset and the movie's frame rate; every value
records where it came from (``params.sources``).

Examples
--------
>>> from cellextract.params import resolve_params, parse_set_args
>>> p = resolve_params(table=parse_set_args(["gSig=4", "min_pnr=10"]), metadata_fr=20.0)
>>> p.init.gSig, p.init.gSiz, p.data.fr, p.sources["init.gSiz"]
((4, 4), (9, 9), 20.0, 'derived')
"""

from cellextract.params.groups import (GROUP_NAMES, GROUPS, DataParams, InitParams, MergingParams,
                                       MotionParams, PatchParams, PreprocessParams, QualityParams,
                                       Rule, SpatialParams, TemporalParams, WorkflowParams,
                                       group_fields, rule_for)
from cellextract.params.load import available_cpus, normalize_layer, read_params_file, resolve_params
from cellextract.params.model import Params
from cellextract.params.parse import parse_set_args, parse_value
from cellextract.params.table import PRESETS, SPEC_DEFAULTS, flat_keys, group_of

__all__ = [
    "resolve_params", "Params", "parse_set_args", "parse_value", "flat_keys", "group_of",
    "read_params_file", "normalize_layer", "available_cpus", "SPEC_DEFAULTS", "PRESETS",
    "GROUPS", "GROUP_NAMES", "group_fields", "rule_for", "Rule",
    "DataParams", "MotionParams", "InitParams", "PreprocessParams", "TemporalParams",
    "SpatialParams", "PatchParams", "MergingParams", "QualityParams", "WorkflowParams",
]
