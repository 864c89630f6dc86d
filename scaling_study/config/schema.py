"""Typed, checked loading of plain dicts (from YAML) into dataclasses.

`from_dict(cls, data)` walks a dataclass's fields: unknown keys, missing required keys, wrong types
and `Literal` values outside their set fail with a `ConfigError` naming the dotted key and what
would be valid. Single-field checks live in each dataclass's `__post_init__` (raising
`FieldError`, which this module turns into a `ConfigError` with the full dotted key), through
the checks here: `check_number` (finite, bounded numbers), `check_finite_values` (free-form
mappings) and `check_choice` (a registry's names).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, Union, get_args, get_origin

from scaling_study.errors import ConfigError


class FieldError(ValueError):
    """Raised by a dataclass's `__post_init__`: `field` is relative to that dataclass."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


def check_number(key: str, value: Any, *, gt: float | None = None, ge: float | None = None,
                 lt: float | None = None, le: float | None = None, integer: bool = False,
                 allow_none: bool = False) -> None:
    """Raise FieldError(`key`) unless `value` is a finite number (an int when `integer`) within
    the given bounds; None passes only with `allow_none`.

    The one number check of the configs: NaN passes every `<`/`>` test and YAML reads `.inf` and
    `.nan` as floats, so each bound alone would let them through.
    """
    if value is None and allow_none:
        return
    bounds = " and ".join(f"{op} {b:g}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None)

    def fail(what: str) -> FieldError:
        return FieldError(key, f"must be {' '.join(w for w in (what, bounds) if w)}, got {value!r}")

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail("an integer" if integer else "a number")
    if not math.isfinite(value):
        raise fail("a finite number")
    if integer and not isinstance(value, numbers.Integral):
        raise fail("an integer")
    if ((gt is not None and not value > gt) or (ge is not None and not value >= ge)
            or (lt is not None and not value < lt) or (le is not None and not value <= le)):
        raise fail("")


def check_finite_values(key: str, value: Any) -> None:
    """Raise FieldError naming the dotted key of any non-finite number inside a free-form value
    (a mapping such as `optimizer.args`, with lists and nested mappings)."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite_values(f"{key}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite_values(f"{key}[{i}]", v)
    elif isinstance(value, float):
        check_number(key, value)


def check_choice(key: str, value: Any, valid: Iterable[str], what: str = "") -> None:
    """Raise FieldError(`key`) unless `value` is one of `valid` (a registry's names)."""
    valid = tuple(valid)
    if value not in valid:
        raise FieldError(key, f"{value!r} is not {what or 'valid'}; valid: {', '.join(valid)}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str, source: str | None) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key, source)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}", source)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(key, f"{value!r} is not valid; valid: {_type_name(tp)}", source)
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, prefix=key, source=source)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}", source)
        (item_tp, *rest) = get_args(tp)
        items = [_convert(item_tp, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}", source)
        value_tp = get_args(tp)[1] if get_args(tp) else Any
        return {k: _convert(value_tp, v, f"{key}.{k}", source) for k, v in value.items()}
    return _scalar(tp, value, key, source)


def _scalar(tp: type, value: Any, key: str, source: str | None) -> Any:
    # bool is an int in Python: keep `true` out of int and float fields.
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-3 as a string; accept numeric strings
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}", source)
    return value


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)  # slow (evaluates annotations): once per class


def from_dict(cls: type, data: Any, *, prefix: str = "", source: str | None = None):
    """Build dataclass `cls` from `data`, checking keys, types and each class's own rules."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<top>", f"expected a mapping, got {data!r}", source)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(_join(prefix, str(unknown[0])),
                          f"unknown key; valid keys here: {', '.join(sorted(fields))}", source)
    kwargs = {}
    for name, field in fields.items():
        key = _join(prefix, name)
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(key, f"required key is missing (expected {_type_name(hints[name])})", source)
            continue
        kwargs[name] = _convert(hints[name], data[name], key, source)
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ConfigError(_join(prefix, exc.field), exc.message, source) from None


def to_dict(obj: Any) -> Any:
    """The plain-dict (YAML-ready) form of a config dataclass; `from_dict` inverts it."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
