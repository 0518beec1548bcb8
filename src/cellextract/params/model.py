"""The resolved parameter set :class:`Params` and its JSON form."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cellextract.errors import ParameterError
from cellextract.params.groups import (DataParams, GROUP_NAMES, GROUPS, InitParams, MergingParams,
                                       MotionParams, PatchParams, PreprocessParams, QualityParams,
                                       SpatialParams, TemporalParams, WorkflowParams, group_fields)

__all__ = ["Params", "to_plain"]


def to_plain(value: Any) -> Any:
    """Return ``value`` as plain JSON types (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    return value


@dataclass
class Params:
    """A fully resolved parameter set: one attribute per group plus ``sources``.

    Build it with :func:`cellextract.params.resolve_params` (or :meth:`from_json`);
    ``sources`` maps ``"group.key"`` to where the value came from (``'default'``,
    ``'preset:1p'``, ``'table'``, ``'file:<path>'``, ``'auto:metadata'``,
    ``'auto:default'`` or ``'derived'``).
    """

    data: DataParams
    motion: MotionParams
    init: InitParams
    preprocess: PreprocessParams
    temporal: TemporalParams
    spatial: SpatialParams
    patch: PatchParams
    merging: MergingParams
    quality: QualityParams
    workflow: WorkflowParams
    sources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: dict[str, dict[str, Any]], sources: dict[str, str]) -> "Params":
        """Build from group -> key -> coerced value (no checks beyond the dataclass fields)."""
        groups = {g: GROUPS[g](**values[g]) for g in GROUP_NAMES}
        return cls(**groups, sources=dict(sources))

    def group_dict(self, name: str) -> dict[str, Any]:
        """Return group ``name`` as a dict of Python values (pairs stay tuples).

        Raises
        ------
        ParameterError
            If ``name`` is not a group.
        """
        if name not in GROUPS:
            raise ParameterError(f"unknown parameter group {name!r}; groups: {', '.join(GROUP_NAMES)}")
        return asdict(getattr(self, name))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return CaImAn's grouped dict in plain JSON types (pairs as lists, None as None)."""
        return {g: {k: to_plain(v) for k, v in self.group_dict(g).items()} for g in GROUP_NAMES}

    def to_json(self, path: str | Path) -> None:
        """Write ``{"params": <grouped dict>, "sources": {...}}`` to ``path``."""
        doc = {"params": self.to_dict(), "sources": dict(sorted(self.sources.items()))}
        Path(path).write_text(json.dumps(doc, indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> "Params":
        """Read a file written by :meth:`to_json` back (values are not re-resolved).

        Raises
        ------
        ParameterError
            If the file is missing, not JSON, or lacks a group or key.
        """
        from cellextract.params.validate import coerce_value

        doc = _read_json(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
            raise ParameterError(f"{path}: expected a resolved parameter file with a 'params' object "
                                 f"(written by Params.to_json)")
        raw, values = doc["params"], {}
        for g in GROUP_NAMES:
            missing = [k for k in group_fields(g) if k not in raw.get(g, {})]
            if missing:
                raise ParameterError(f"{path}: resolved parameters lack {g}.{missing[0]}")
            values[g] = {k: coerce_value(g, k, raw[g][k], origin=str(path)) for k in group_fields(g)}
        return cls.from_values(values, doc.get("sources", {}))

    def report(self) -> str:
        """Return a readable table of every parameter: group, key, value, source."""
        rows = [("group", "key", "value", "source")]
        for g, d in self.to_dict().items():
            rows += [(g, k, json.dumps(v), self.sources.get(f"{g}.{k}", "?")) for k, v in d.items()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
        return "\n".join(lines)


def _read_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"parameter file {str(p)!r} does not exist")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ParameterError(f"parameter file {str(p)!r} is not valid JSON: {exc.msg} at line "
                             f"{exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise ParameterError(f"parameter file {str(p)!r} is not a UTF-8 text JSON file") from None
