"""Type coercion and validation of parameter values, with one-line error messages.

:func:`coerce_value` checks one value against its field's :class:`~cellextract.params.groups.Rule`
(scalars given for pairs become pairs, integral floats become ints, text is parsed);
:func:`check_cross` checks rules that involve several parameters.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from cellextract.errors import ParameterError
from cellextract.params.groups import Rule, rule_for
from cellextract.params.parse import parse_value

__all__ = ["coerce_value", "check_cross"]

_TEXT_KINDS = ("choice", "border_nan")


def _fail(origin: str, name: str, value: Any, rule: Rule, why: str = "") -> ParameterError:
    detail = f" ({why})" if why else ""
    return ParameterError(f"{origin}: {name} = {value!r} is not allowed{detail}; "
                          f"expected {rule.allowed()}")


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool) or type(v).__name__ == "bool_"


def _in_range(x: float, rule: Rule) -> bool:
    if isinstance(x, float) and math.isnan(x):
        return False
    if rule.low is not None and (x <= rule.low if rule.low_open else x < rule.low):
        return False
    if rule.high is not None and (x >= rule.high if rule.high_open else x > rule.high):
        return False
    return True


def _number(v: Any, *, integer: bool) -> int | float | None:
    """Return ``v`` as int/float, or None if it is not a number of that kind."""
    if _is_bool(v) or not isinstance(v, numbers.Real):
        return None
    if integer:
        f = float(v)
        return int(f) if f.is_integer() else None
    return float(v)


def _elements(value: Any, kind: str) -> list[Any] | None:
    """Split a pair/list value into elements (a scalar given for a pair is doubled)."""
    if isinstance(value, (list, tuple)):
        if kind.startswith("pair") and len(value) != 2:
            return None
        return list(value)
    if kind.startswith("pair"):
        return [value, value]
    return [value]


def _coerce_text(value: str, rule: Rule) -> Any:
    if rule.kind == "border_nan":
        low = value.strip().lower()
        return {"true": True, "false": False}.get(low, low)
    return value.strip().lower()


def coerce_value(group: str, key: str, value: Any, *, origin: str = "parameters") -> Any:
    """Return ``value`` converted to the type of ``group.key``, or raise.

    Parameters
    ----------
    group, key : str
        The parameter (must exist).
    value : object
        Value from a file, table or ``--set`` (text is parsed first).
    origin : str
        Where the value came from, used in the error message.

    Returns
    -------
    object
        bool/int/float/str, a tuple for pairs and lists, None, or ``'auto'``.

    Raises
    ------
    ParameterError
        Naming the parameter, the value and what is allowed.
    """
    rule = rule_for(group, key)
    name = f"{group}.{key}"
    if isinstance(value, str):
        if rule.auto and value.strip().lower() == "auto":
            return "auto"
        if rule.kind in _TEXT_KINDS:
            value = _coerce_text(value, rule)
        else:
            value = parse_value(value)
    if value is None:
        if rule.nullable:
            return None
        raise _fail(origin, name, value, rule, "null is not allowed")
    if rule.kind == "bool":
        if not _is_bool(value):
            raise _fail(origin, name, value, rule)
        return bool(value)
    if rule.kind == "border_nan":
        if _is_bool(value):
            return bool(value)
        if value in ("copy", "min"):
            return value
        raise _fail(origin, name, value, rule)
    if rule.kind == "choice":
        if not isinstance(value, str) or value not in rule.choices:
            raise _fail(origin, name, value, rule)
        return value
    if rule.kind in ("int", "float"):
        x = _number(value, integer=rule.kind == "int")
        if x is None or not _in_range(x, rule):
            raise _fail(origin, name, value, rule)
        return x
    return _coerce_sequence(value, rule, origin=origin, name=name)


def _coerce_sequence(value: Any, rule: Rule, *, origin: str, name: str) -> tuple:
    elems = _elements(value, rule.kind)
    if elems is None:
        raise _fail(origin, name, value, rule, "a pair needs exactly 2 values")
    integer = rule.kind in ("pair_int", "list_int")
    out = []
    for e in elems:
        if isinstance(e, str):
            e = parse_value(e)
        x = _number(e, integer=integer)
        if x is None or not _in_range(x, rule):
            raise _fail(origin, name, value, rule)
        out.append(x)
    return tuple(out)


def _src(sources: dict[str, str], name: str) -> str:
    return f" (from {sources[name]})" if name in sources else ""


def check_cross(values: dict[str, dict[str, Any]], sources: dict[str, str]) -> None:
    """Check rules that involve several parameters of resolved ``values``.

    Parameters
    ----------
    values : dict
        Group -> key -> coerced value (after 'auto' and derived values are resolved).
    sources : dict
        ``"group.key"`` -> source, used to say where a bad value came from.

    Raises
    ------
    ParameterError
        For the first violated rule.
    """
    mo, pa, init, pre = values["motion"], values["patch"], values["init"], values["preprocess"]
    if any(s <= o for s, o in zip(mo["strides"], mo["overlaps"])):
        raise ParameterError(
            f"motion.strides = {list(mo['strides'])}{_src(sources, 'motion.strides')} and motion.overlaps = "
            f"{list(mo['overlaps'])}{_src(sources, 'motion.overlaps')}: strides must be larger than overlaps")
    if pa["rf"] is not None and pa["stride"] >= 2 * pa["rf"]:
        raise ParameterError(
            f"patch.stride = {pa['stride']}{_src(sources, 'patch.stride')} must be smaller than the patch "
            f"size 2*rf = {2 * pa['rf']} (patch.rf = {pa['rf']}{_src(sources, 'patch.rf')})")
    lo, hi = pre["noise_range"]
    if lo >= hi:
        raise ParameterError(f"preprocess.noise_range = {[lo, hi]}{_src(sources, 'preprocess.noise_range')}"
                             f" must be [low, high] with low < high, e.g. [0.25, 0.5]")
    if init["K"] is None and init["method_init"] in ("greedy_roi", "sparse_nmf"):
        raise ParameterError(
            f"init.K is required for method_init={init['method_init']!r} but is 'auto'/null"
            f"{_src(sources, 'init.K')}; set the expected number of components per patch, e.g. "
            f"--set K=4 or \"init\": {{\"K\": 4}}; only 'corr_pnr' can find K automatically")
