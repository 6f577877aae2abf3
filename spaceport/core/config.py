"""Stage options as frozen dataclasses, and their one conversion to and from strings.

Every stage's options are one frozen dataclass with a docstring under each field (gsplat's
style). A field whose type is itself a dataclass is a *group* (the trainer's data, optimisation,
strategy and runtime options): its fields are options under their own names, so the outside world
sees one flat set of option names however the code groups them. This module is the single path
between those dataclasses and the outside world:
SageMaker hyperparameters (all values strings), CLI flags (``--max-side 1600``) and the
plan's container arguments all go through :func:`from_strings` / :func:`to_strings`, so a
value that works locally works in the cloud.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import itertools
import json
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from spaceport.core.errors import ConfigInvalid

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field, by field name (read from the source)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_group(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.cache
def options(cls: type) -> dict[str, tuple[tuple[str, ...], Any, type]]:
    """Every option of ``cls``: name -> (attribute path, type, the dataclass that declares it).

    Groups are expanded, so ``TrainConfig``'s ``steps`` is ``(("optim", "steps"), int, OptimConfig)``.
    Option names must be unique across groups (one flat namespace for flags and hyperparameters).
    """
    out: dict[str, tuple[tuple[str, ...], Any, type]] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = {f.name: ((), tp, cls)} if not _is_group(tp) else options(tp)
        for name, (path, leaf_tp, owner) in inner.items():
            if name in out:
                raise TypeError(f"{cls.__name__}: option {name!r} is declared twice")
            out[name] = ((f.name, *path) if _is_group(tp) else (f.name,), leaf_tp, owner)
    return out


def option_value(obj: Any, name: str) -> Any:
    """The value of option ``name`` in ``obj`` (reached through its group)."""
    value = obj
    for attr in options(type(obj))[name][0]:
        value = getattr(value, attr)
    return value


def _replace(obj: Any, values: Mapping[str, Any]) -> Any:
    """``obj`` with options replaced by name; each group is rebuilt once (its checks run once)."""
    paths = options(type(obj))
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        path = paths[name][0]
        if len(path) == 1:
            direct[name] = value
        else:
            nested.setdefault(path[0], {})[name] = value
    for group, inner in nested.items():
        direct[group] = _replace(getattr(obj, group), inner)
    return dataclasses.replace(obj, **direct)


def parse_value(tp: Any, text: str, name: str = "value") -> Any:
    """Parse one string into the annotated type ``tp`` (bool, int, float, str, Literal, Optional, tuple)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if text.strip().lower() in {"", "none", "null"} and type(None) in get_args(tp):
            return None
        errors = []
        for arg in args:
            try:
                return parse_value(arg, text, name)
            except ConfigInvalid as exc:
                errors.append(exc.reason)
        raise ConfigInvalid(f"{name}={text!r} is not valid ({'; '.join(errors)})")
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if str(choice) == text.strip():
                return choice
        raise ConfigInvalid(f"{name}={text!r} is not one of {', '.join(map(str, choices))}")
    if origin is tuple:
        inner = get_args(tp)
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
        if len(inner) == 2 and inner[1] is Ellipsis:
            return tuple(parse_value(inner[0], p.strip(), name) for p in parts)
        if len(parts) != len(inner):
            raise ConfigInvalid(f"{name}={text!r} needs {len(inner)} comma-separated values")
        return tuple(parse_value(t, p.strip(), name) for t, p in zip(inner, parts, strict=True))
    t = text.strip()
    if tp is bool:
        if t.lower() in _TRUE:
            return True
        if t.lower() in _FALSE:
            return False
        raise ConfigInvalid(f"{name}={text!r} is not a boolean (use true or false)")
    if tp is int:
        try:
            return int(t)
        except ValueError:
            try:
                f = float(t)
            except ValueError:
                f = float("nan")
            if f.is_integer():
                return int(f)
            raise ConfigInvalid(f"{name}={text!r} is not an integer") from None
    if tp is float:
        try:
            value = float(t)
        except ValueError:
            raise ConfigInvalid(f"{name}={text!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigInvalid(f"{name}={text!r} must be a finite number")
        return value
    if tp is str:
        return text
    raise ConfigInvalid(f"{name}: cannot parse type {tp!r}")


def format_value(value: Any) -> str:
    """The string form of a field value that :func:`parse_value` reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    return str(value)


def _unknown(cls: type, key: str, known: list[str]) -> ConfigInvalid:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigInvalid(
        f"Unknown option {key!r} for {cls.__name__}.{hint}",
        f"Use one of: {', '.join(known)}",
        option=key,
    )


def from_strings(cls: type[T], values: Mapping[str, Any], *, base: T | None = None) -> T:
    """Build ``cls`` from string values (hyperparameters, CLI flags), starting from ``base`` or defaults.

    Keys may use ``-`` or ``_``. Unknown keys and unparsable values raise :class:`ConfigInvalid`.
    Non-string values (already typed) are accepted as they are after a type check.
    """
    known = options(cls)
    names = list(known)
    parsed: dict[str, Any] = {}
    for raw_key, raw in values.items():
        key = raw_key.replace("-", "_")
        if key not in known:
            raise _unknown(cls, raw_key, names)
        tp = known[key][1]
        if isinstance(raw, str):
            parsed[key] = parse_value(tp, raw, key)
        else:
            parsed[key] = parse_value(tp, format_value(raw), key) if raw is not None else None
    try:
        obj = _replace(base if base is not None else cls(), parsed)
    except (TypeError, ValueError) as exc:
        raise ConfigInvalid(f"{cls.__name__}: {exc}") from exc
    return obj


def to_strings(obj: Any, *, only_changed: bool = False) -> dict[str, str]:
    """Every field as a string (SageMaker hyperparameters are strings), optionally only non-defaults."""
    out: dict[str, str] = {}
    default = type(obj)() if only_changed else None
    for name in options(type(obj)):
        value = option_value(obj, name)
        if only_changed and option_value(default, name) == value:
            continue
        out[name] = format_value(value)
    return out


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a config by option name, groups flattened (tuples become lists)."""
    return json.loads(json.dumps({name: option_value(obj, name) for name in options(type(obj))}))


def describe(cls: type) -> list[tuple[str, str, str]]:
    """``(name, default, doc)`` for every field: the ``--help`` text and the README tables use it."""
    default = cls()
    return [(name, format_value(option_value(default, name)), field_docs(owner).get(name, ""))
            for name, (_, _, owner) in options(cls).items()]


def parse_stage_options(pairs: list[str] | tuple[str, ...], flag: str = "--set") -> dict[str, dict[str, str]]:
    """``["train.steps=500"]`` -> ``{"train": {"steps": "500"}}`` (values stay strings; the stage's
    config validates them). The CLI's ``run --set`` and ``submit --option`` both use this."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        stage, dot, name = key.partition(".")
        if not sep or not dot or not stage or not name:
            raise ConfigInvalid(f"{flag} {pair!r} is not STAGE.OPTION=VALUE", f"Write e.g. {flag} train.steps=500")
        out.setdefault(stage, {})[name.replace("-", "_")] = value
    return out


def click_options(cls: type) -> Callable[[Callable], Callable]:
    """Decorator adding one ``--field-name VALUE`` click option per field of ``cls``.

    The values arrive as strings (or ``None`` when not given) in a ``config_overrides`` dict
    keyword argument, to be passed to :func:`from_strings`. Field docstrings become the help.
    """
    import click  # the CLI only; the Lambdas never call this

    def decorate(fn: Callable) -> Callable:
        names = []
        for name, default, doc in reversed(describe(cls)):
            flag = "--" + name.replace("_", "-")
            names.append(name)
            fn = click.option(flag, name, default=None, metavar="VALUE",
                              help=f"{doc} [default: {default}]")(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            overrides = {n: kwargs.pop(n) for n in names if n in kwargs}
            kwargs["config_overrides"] = {k: v for k, v in overrides.items() if v is not None}
            return fn(*args, **kwargs)

        return wrapper

    return decorate
