"""Workflow configuration -> resolved parameters, and writing run configs for the CLI."""

from __future__ import annotations

from pathlib import Path

import yaml

from cellextract.errors import ParameterError


def table_from_config(cfg: dict) -> dict:
    """The analysis-table values of a workflow config (flat CaImAn names).

    ``n_processes``, ``export_nwb`` and ``temp_memmap`` are top-level workflow keys and are
    mapped onto their parameter groups here.
    """
    table = dict(cfg.get("params") or {})
    if cfg.get("n_processes") is not None:
        table.setdefault("n_processes", cfg["n_processes"])
    for key in ("export_nwb", "temp_memmap"):
        if cfg.get(key) is not None:
            table.setdefault(key, cfg[key])
    return table


def resolve_from_config(cfg: dict, *, metadata_fr: float | None):
    """Resolve the parameters a workflow config describes.

    Parameters
    ----------
    cfg : dict
        Keys ``params``, ``params_file``, ``overwrite_params``, ``preset``, ``n_processes``.
    metadata_fr : float or None
        Frame rate from the movie's metadata (Hz), used when ``fr`` is ``'auto'``.

    Returns
    -------
    cellextract.params.Params
    """
    from cellextract.params import resolve_params

    return resolve_params(
        table=table_from_config(cfg),
        params_file=cfg.get("params_file"),
        overwrite_params=bool(cfg.get("overwrite_params", False)),
        metadata_fr=metadata_fr,
        preset=cfg.get("preset") or "1p",
    )


def params_from_stage(stage_dict: dict, *, metadata_fr: float | None):
    """Rebuild full parameters from a stage's resolved subset (see ``snake.stage_params``).

    Groups the stage does not depend on take their defaults; ``fr: 'auto'`` is resolved
    from ``metadata_fr``.
    """
    from cellextract.params import resolve_params

    return resolve_params(table=stage_dict, metadata_fr=metadata_fr)


def write_run_config(path: str | Path, *, series: dict[str, list[str]], results: str,
                     preset: str = "1p", params: dict | None = None,
                     params_file: str | None = None, overwrite_params: bool = False,
                     n_processes: int = 2, temp_memmap: bool = False,
                     export_nwb: bool = False) -> Path:
    """Write a workflow config YAML (used by ``cellextract run``)."""
    for name, files in series.items():
        if not files:
            raise ParameterError(f"series {name!r} has no movie files")
    cfg = {
        "series": {k: [str(f) for f in v] for k, v in series.items()},
        "results": str(results),
        "preset": preset,
        "params": dict(params or {}),
        "params_file": None if params_file is None else str(params_file),
        "overwrite_params": bool(overwrite_params),
        "n_processes": int(n_processes),
        "temp_memmap": bool(temp_memmap),
        "export_nwb": bool(export_nwb),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
