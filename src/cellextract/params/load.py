"""Resolution of a parameter set: defaults < preset < analysis table < parameter file.

The parameter file applies only when ``overwrite_params`` is true (the spec's
"Overwrite Analysis Table Parameters"); ``'auto'`` values and CaImAn's consistency
rules are resolved after merging, then cross-parameter rules are checked.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

from cellextract.errors import ParameterError
from cellextract.log import get_logger
from cellextract.params.groups import ALIASES, GROUP_NAMES, group_fields
from cellextract.params.model import Params, _read_json
from cellextract.params.table import PRESETS, SPEC_DEFAULTS, flat_keys, group_of, suggest
from cellextract.params.validate import check_cross, coerce_value

__all__ = ["resolve_params", "normalize_layer", "read_params_file", "available_cpus"]

log = get_logger(__name__)
DEFAULT_FR = 30.0

Layer = dict[tuple[str, str], Any]


def available_cpus() -> int:
    """Return the number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _target(group: str, key: str, *, origin: str) -> tuple[str, str]:
    """Return the stored ``(group, key)`` of a key found inside a group of a grouped dict."""
    if (group, key) in ALIASES:
        return ALIASES[(group, key)]
    if key in group_fields(group):
        return group, key
    hint = suggest(key, group_fields(group))
    home = flat_keys().get(key)
    if home:
        hint = f" (it belongs to group {home!r})"
    raise ParameterError(f"{origin}: unknown parameter {key!r} in group {group!r}{hint}")


def _entries(d: dict, *, origin: str) -> list[tuple[str, str, str, Any]]:
    """List ``(name, group, key, value)`` of a flat, grouped or mixed dict."""
    if set(d) == {"params", "sources"} or (set(d) == {"params"} and isinstance(d["params"], dict)):
        d = d["params"]  # a file written by Params.to_json
    out = []
    for name, value in d.items():
        name = str(name)
        if name in GROUP_NAMES:
            if not isinstance(value, dict):
                raise ParameterError(f"{origin}: group {name!r} must be an object of parameters, "
                                     f"got {value!r}")
            out += [(f"{name}.{k}", *_target(name, str(k), origin=origin), v) for k, v in value.items()]
        elif isinstance(value, dict) and "." not in name and name not in flat_keys():
            raise ParameterError(f"{origin}: unknown parameter group {name!r}"
                                 f"{suggest(name, GROUP_NAMES)} (groups: {', '.join(GROUP_NAMES)})")
        else:
            out.append((name, *group_of(name, where=origin), value))
    return out


def normalize_layer(d: dict | None, *, origin: str) -> Layer:
    """Convert a flat/grouped dict to ``{(group, key): coerced value}``.

    A ``p`` given in only one of ``preprocess``/``temporal`` (or flat) sets both; keys
    repeated in several groups (``nb``) must agree.

    Parameters
    ----------
    d : dict or None
        ``{"gSig": 4}``, ``{"init": {"gSig": [4, 4]}}``, ``{"init.gSig": 4}`` or a mix.
    origin : str
        Name of the layer for error messages (``'analysis table'``, the file path).

    Returns
    -------
    dict
        ``(group, key)`` -> value.
    """
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ParameterError(f"{origin}: parameters must be a JSON object / mapping, got {type(d).__name__}")
    layer: Layer = {}
    given_by: dict[tuple[str, str], str] = {}
    for name, group, key, value in _entries(d, origin=origin):
        v = coerce_value(group, key, value, origin=origin)
        targets = [("preprocess", "p"), ("temporal", "p")] if (key == "p" and "." not in name) else [(group, key)]
        for t in targets:
            if t in layer and layer[t] != v:
                raise ParameterError(f"{origin}: {given_by[t]} = {layer[t]!r} and {name} = {value!r} "
                                     f"conflict; give one value")
            layer[t], given_by[t] = v, name
    pp, tp = ("preprocess", "p"), ("temporal", "p")
    if (pp in layer) != (tp in layer):
        layer[tp if pp in layer else pp] = layer.get(pp, layer.get(tp))
    elif pp in layer and layer[pp] != layer[tp]:
        log.warning("%s: preprocess.p = %s differs from temporal.p = %s", origin, layer[pp], layer[tp])
    return layer


def read_params_file(path: str | Path) -> Layer:
    """Read a JSON parameter file (CaImAn grouped, flat or mixed) into a layer.

    Raises
    ------
    ParameterError
        If the file is missing, not valid JSON, or holds unknown or bad parameters.
    """
    return normalize_layer(_read_json(path), origin=str(path))


def _apply(values: dict, sources: dict, layer: Layer, source: str) -> None:
    for (g, k), v in layer.items():
        values[g][k] = v
        sources[f"{g}.{k}"] = source


def _set(values: dict, sources: dict, g: str, k: str, v: Any, source: str = "derived") -> None:
    values[g][k] = v
    sources[f"{g}.{k}"] = source


def _resolve_fr(values: dict, sources: dict, metadata_fr: float | None) -> None:
    if values["data"]["fr"] not in ("auto", None):
        return
    ok = isinstance(metadata_fr, numbers.Real) and not isinstance(metadata_fr, bool) \
        and math.isfinite(metadata_fr) and metadata_fr > 0
    if ok:
        _set(values, sources, "data", "fr", float(metadata_fr), "auto:metadata")
        log.info("fr = 'auto': using the frame rate from the movie metadata, %.4g Hz", metadata_fr)
    else:
        _set(values, sources, "data", "fr", DEFAULT_FR, "auto:default")
        log.warning("fr = 'auto' but the movie metadata has no frame rate (%r); using %.0f Hz",
                    metadata_fr, DEFAULT_FR)


def _resolve_init(values: dict, sources: dict) -> None:
    init = values["init"]
    if init["K"] == "auto":
        init["K"] = None
    if init["gSiz"] is None:
        _set(values, sources, "init", "gSiz", tuple(2 * g + 1 for g in init["gSig"]))
    if any(s % 2 == 0 for s in init["gSiz"]):
        odd = tuple(s + 1 if s % 2 == 0 else s for s in init["gSiz"])
        log.warning("init.gSiz = %s must be odd; using %s", list(init["gSiz"]), list(odd))
        _set(values, sources, "init", "gSiz", odd)


def _resolve_background(values: dict, sources: dict) -> None:
    init, patch = values["init"], values["patch"]
    if init["nb"] == 0:
        if patch["nb_patch"] != 0:
            log.warning("init.nb = 0 (ring background model), hence setting patch.nb_patch to 0")
            _set(values, sources, "patch", "nb_patch", 0)
        if patch["low_rank_background"] is not False:
            if patch["low_rank_background"]:
                log.warning("init.nb = 0, hence setting patch.low_rank_background to False")
            _set(values, sources, "patch", "low_rank_background", False)
        if init["method_init"] == "corr_pnr" and init["normalize_init"]:
            log.warning("corr_pnr with the ring background model (nb = 0), hence setting "
                        "init.normalize_init to False")
            _set(values, sources, "init", "normalize_init", False)
    elif patch["low_rank_background"] is None:
        _set(values, sources, "patch", "low_rank_background", True)


def _resolve_processes(values: dict, sources: dict, n_cpus: int | None) -> None:
    cpus = int(n_cpus) if n_cpus else available_cpus()
    n = values["patch"]["n_processes"]
    if n is None:
        _set(values, sources, "patch", "n_processes", cpus)
    elif n > cpus:
        log.info("patch.n_processes = %d capped at the %d available CPUs", n, cpus)
        _set(values, sources, "patch", "n_processes", cpus)


def _preset_layer(preset: str | None) -> tuple[Layer, str]:
    if preset is None:
        return {}, ""
    name = str(preset).strip().lower()
    if name not in PRESETS:
        raise ParameterError(f"preset = {preset!r} is not allowed; expected one of "
                             f"{', '.join(map(repr, PRESETS))}")
    return normalize_layer(PRESETS[name], origin=f"preset {name}"), f"preset:{name}"


def resolve_params(*, table: dict | None = None, params_file: str | Path | None = None,
                   overwrite_params: bool = False, metadata_fr: float | None = None,
                   preset: str | None = None, n_cpus: int | None = None) -> Params:
    """Resolve the full parameter set of one run.

    Precedence: spec defaults < ``preset`` column < ``table`` < ``params_file`` (only
    when ``overwrite_params``; otherwise a given file is ignored with a warning).

    Parameters
    ----------
    table : dict, optional
        Analysis-table values, flat (``{"gSig": 4}``), qualified (``{"init.gSig": 4}``)
        or grouped (``{"init": {"gSig": 4}}``); text values are parsed.
    params_file : str or Path, optional
        JSON parameter file in CaImAn's grouped format or flat.
    overwrite_params : bool
        Let the file override the table (also read from ``table['overwrite_params']``).
    metadata_fr : float, optional
        Frame rate from the movie metadata, used for ``fr: 'auto'``.
    preset : {'1p', '2p'}, optional
        Apply the spec's 1P/2P column below the table.
    n_cpus : int, optional
        CPUs available (default: this process's CPU affinity); caps ``n_processes``.

    Returns
    -------
    Params
        Resolved, validated parameters with their sources.

    Raises
    ------
    ParameterError
        For unknown names, bad values, and inconsistent parameters.
    """
    values = {g: {} for g in GROUP_NAMES}
    sources: dict[str, str] = {}
    _apply(values, sources, normalize_layer(SPEC_DEFAULTS, origin="defaults"), "default")
    preset_layer, preset_source = _preset_layer(preset)
    _apply(values, sources, preset_layer, preset_source)
    _apply(values, sources, normalize_layer(table, origin="analysis table"), "table")
    overwrite = bool(overwrite_params) or values["workflow"]["overwrite_params"]
    if overwrite_params:
        _set(values, sources, "workflow", "overwrite_params", True, "table")
    if params_file is not None:
        if overwrite:
            _apply(values, sources, read_params_file(params_file), f"file:{params_file}")
            _set(values, sources, "workflow", "overwrite_params", True,
                 sources["workflow.overwrite_params"])
        else:
            log.warning("parameter file %s was ignored because overwrite_params is false; set "
                        "overwrite_params to true to let it override the analysis table", params_file)
    _resolve_fr(values, sources, metadata_fr)
    _resolve_init(values, sources)
    _resolve_background(values, sources)
    _resolve_processes(values, sources, n_cpus)
    check_cross(values, sources)
    return Params.from_values(values, sources)
