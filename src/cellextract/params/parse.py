"""Parsing of parameter values given as text (``--set key=value``, analysis-table cells)."""

from __future__ import annotations

import re
from typing import Any

from cellextract.errors import ParameterError
from cellextract.params.table import group_of

__all__ = ["parse_value", "parse_set_args"]

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NULLS = {"null", "none", "~"}


def _parse_scalar(text: str) -> Any:
    s = text.strip().strip("'\"") if text.strip()[:1] in "'\"" else text.strip()
    low = s.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low in _NULLS or s == "":
        return None
    if _INT.fullmatch(s):
        return int(s)
    if _FLOAT.fullmatch(s):
        return float(s)
    return s


def parse_value(text: str) -> Any:
    """Convert a text value to a Python value.

    Numbers become int/float, ``true``/``false`` (any case) booleans, ``null``/``None``
    None, ``[5, 5]``, ``(5, 5)`` or ``5,5`` lists; anything else (``auto``, ``copy``,
    ``corr_pnr``) stays a string.

    Parameters
    ----------
    text : str
        The text to convert.

    Returns
    -------
    object
        The parsed value.
    """
    s = text.strip()
    if s[:1] in "[(" and s[-1:] in "])":
        inner = s[1:-1].strip()
        return [] if not inner else [_parse_scalar(t) for t in inner.split(",")]
    if "," in s:
        return [_parse_scalar(t) for t in s.split(",")]
    return _parse_scalar(s)


def parse_set_args(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` (e.g. repeated ``--set``) into a flat table dict.

    Keys may be flat (``gSig``) or qualified (``init.gSig``); they are checked now so a
    typo fails before any work starts.

    Parameters
    ----------
    items : list of str
        ``key=value`` strings.

    Returns
    -------
    dict
        Name -> parsed value, usable as ``resolve_params(table=...)``.

    Raises
    ------
    ParameterError
        If an item has no ``=``, an empty name, or an unknown name.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"--set {item!r}: expected key=value, e.g. --set gSig=4")
        group_of(key, where=f"--set {item!r}")
        out[key] = parse_value(value)
    return out
