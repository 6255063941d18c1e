"""Stage configs: one dataclass per stage, YAML recipes, ``--key=value`` overrides.

``load_config(cls, recipe, overrides)`` starts from the dataclass defaults, applies the recipe's
top-level mapping (nested dataclass fields take nested mappings), then the overrides in order
(``--lr=3e-4``, ``--model.d_model=128``, ``steps=10``). Values are checked against the annotations:
``int``, ``float`` (``3e-4``), ``bool`` (true/false/1/0/yes/no/on/off), ``str``, ``Path``,
``Optional[X]`` (``none``/``null`` on the command line), ``list[X]``/``tuple[...]`` (``[1,2,4]`` or
``1,2,4``), ``dict[K, V]`` (``{a: 1}``), ``Literal[...]``, ``Any``, unions, nested dataclasses.
Mistakes raise :class:`ConfigError`: one line naming the file or flag, the key and the fix.

>>> from dataclasses import dataclass
>>> @dataclass
... class Demo:
...     steps: int = 10
...     lr: float = 1e-3
>>> load_config(Demo, None, ["--steps=20", "lr=3e-4"])
Demo(steps=20, lr=0.0003)
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "load_config", "parse_overrides", "config_to_dict", "save_config", "describe_config"]

_NONE_WORDS = {"none", "null", "~"}


class ConfigError(Exception):
    """A user mistake in a recipe or an override; the message is one line that says how to fix it."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``3e-4`` / ``1e5`` as floats (YAML 1.2 style, unlike PyYAML)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


class _TypeMismatch(Exception):
    """Internal: value does not fit the annotation; message is the expected-type phrase."""


# ---- type coercion ---------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "none"
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Union or isinstance(tp, types.UnionType)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _nested_dataclass(tp: Any) -> tuple[type | None, bool]:
    """``(dataclass, optional)`` if ``tp`` is a dataclass or ``Optional[dataclass]``."""
    if _is_dataclass_type(tp):
        return tp, False
    args = typing.get_args(tp)
    if _is_union(tp) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        if _is_dataclass_type(inner):
            return inner, True
    return None, False


def _parse_text(text: str) -> Any:
    """Parse override text as inline YAML; fall back to the raw string if it is not valid YAML."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - safe loader subclass
    except yaml.YAMLError:
        return text


def _coerce_number(value: Any, tp: type) -> Any:
    """int/float/bool from a YAML scalar or command-line text (``1e3`` is a valid int)."""
    if isinstance(value, str):  # text: YAML rules (1_000, 1e3, yes/no/on/off), python float()
        try:
            value = float(value) if tp is float else _parse_text(value.strip())
        except ValueError:
            raise _TypeMismatch("float") from None
    if tp is bool:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return bool(value)
        raise _TypeMismatch("bool (true/false)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            tp is int and not float(value).is_integer()):
        raise _TypeMismatch(tp.__name__)
    return tp(value)


def _coerce_seq(value: Any, tp: Any, from_text: bool) -> Any:
    """list/tuple from a YAML list, ``"[1, 2]"`` or ``"1,2"`` (parts stay text) or ``""``."""
    origin = typing.get_origin(tp) or tp
    items_from_text = False
    if isinstance(value, str) and from_text:
        text = value.strip()
        if text.startswith("["):
            value = _parse_text(text)
        else:
            value, items_from_text = ([p.strip() for p in text.split(",")] if text else []), True
    if not isinstance(value, (list, tuple)):
        raise _TypeMismatch(f"{_type_name(tp)} (a list like [1,2,4])")
    args = typing.get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise _TypeMismatch(f"{_type_name(tp)} with {len(args)} items")
        return tuple(_coerce(v, a, items_from_text) for v, a in zip(value, args))
    out = [_coerce(v, args[0] if args else Any, items_from_text) for v in value]
    return tuple(out) if origin is tuple else out


def _coerce_dict(value: Any, tp: Any, from_text: bool) -> dict:
    if isinstance(value, str) and from_text:
        value = _parse_text(value.strip() or "{}")
    if not isinstance(value, dict):
        raise _TypeMismatch(f"{_type_name(tp)} (a mapping like {{a: 1}})")
    args = typing.get_args(tp)
    key_tp, val_tp = (args if len(args) == 2 else (Any, Any))
    return {_coerce(k, key_tp, False): _coerce(v, val_tp, False) for k, v in value.items()}


def _coerce_union(value: Any, args: tuple, from_text: bool) -> Any:
    if type(None) in args and (value is None or (
            from_text and isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
        return None
    for arg in (a for a in args if a is not type(None)):
        try:
            return _coerce(value, arg, from_text)
        except _TypeMismatch:
            continue
    raise _TypeMismatch(" or ".join(_type_name(a) for a in args))


def _coerce_literal(value: Any, choices: tuple, from_text: bool) -> Any:
    for choice in choices:
        try:
            if _coerce(value, type(choice), from_text) == choice:
                return choice
        except _TypeMismatch:
            continue
    raise _TypeMismatch("one of " + ", ".join(repr(c) for c in choices))


def _coerce(value: Any, tp: Any, from_text: bool) -> Any:
    """Coerce ``value`` to annotation ``tp``; ``from_text`` means it came from a command line."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return _parse_text(value) if from_text and isinstance(value, str) else value
    if _is_union(tp):
        return _coerce_union(value, typing.get_args(tp), from_text)
    if origin is typing.Literal:
        return _coerce_literal(value, typing.get_args(tp), from_text)
    if tp in (list, tuple) or origin in (list, tuple):
        return _coerce_seq(value, tp, from_text)
    if tp is dict or origin is dict:
        return _coerce_dict(value, tp, from_text)
    if tp in (bool, int, float):
        if isinstance(value, str) and not from_text:  # a YAML string where a number belongs
            raise _TypeMismatch(_type_name(tp))
        return _coerce_number(value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        if from_text or isinstance(value, (bool, dict, list)) or value is None:
            raise _TypeMismatch("str")
        return str(value)  # YAML `name: 007` / `tag: 1.5` read as a number: keep user's intent
    if tp is Path and isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _TypeMismatch(_type_name(tp))


# ---- field lookup ----------------------------------------------------------------------------

def _fields(cls: type) -> dict[str, Any]:
    """Init fields of dataclass ``cls`` -> resolved annotation (works with string annotations)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _unknown_key(where: str, key: str, cls: type, valid: list[str]) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, valid, n=2, cutoff=0.6)
    close += [v for v in valid if v not in close and (leaf.startswith(v + "_")
                                                      or v.startswith(leaf + "_"))]
    hint = ("; did you mean " + " or ".join(f"'{c}'" for c in close[:3]) + "?") if close else ";"
    return ConfigError(f"{where}: unknown key '{key}' for {cls.__name__}{hint} "
                       f"valid keys: {', '.join(valid)}")


def _value_or_nested(value: Any, tp: Any, where: str, path: str, from_text: bool) -> Any:
    """Validate one value; nested dataclass fields take a mapping of their own fields."""
    nested, optional = _nested_dataclass(tp)
    if nested is not None:
        if from_text and isinstance(value, str):
            value, from_text = _parse_text(value), False
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {nested.__name__} fields for "
                              f"'{path}', got {type(value).__name__}; "
                              f"use nested keys like --{path}.<field>=...")
        return _validate_mapping(nested, value, where, path + ".", from_text)
    if from_text and isinstance(value, dict):
        raise ConfigError(f"{where}: '{path}' is not a nested config ({_type_name(tp)}); "
                          f"use --{path}=...")
    try:
        return _coerce(value, tp, from_text)
    except _TypeMismatch as exc:
        if from_text:
            raise ConfigError(f"{where}: expected {exc} for '{path}'") from None
        raise ConfigError(f"{where}: key '{path}' expected {exc}, got {type(value).__name__} "
                          f"{value!r}; fix the value in the file or override with --{path}=...") \
            from None


def _validate_mapping(cls: type, data: dict, where: str, prefix: str, from_text: bool) -> dict:
    """Check keys against ``cls``'s fields and coerce values; returns a nested plain dict."""
    fields = _fields(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            raise _unknown_key(where, f"{prefix}{key}", cls, list(fields))
        out[key] = _value_or_nested(value, fields[key], where, prefix + key, from_text)
    return out


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# ---- recipe + overrides ----------------------------------------------------------------------

def _read_recipe(recipe: str | Path) -> dict:
    """The recipe's top-level mapping ({} for an empty file); ConfigError with file:line."""
    path = Path(recipe)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {recipe}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        why = " ".join(str(exc.problem or exc.context).split())
        raise ConfigError(f"{recipe}{line}: invalid YAML ({why})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{recipe}: invalid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, (dict, type(None))):
        raise ConfigError(f"{recipe}: expected a mapping of key: value at top level, "
                          f"got {type(data).__name__}")
    return data or {}


def _override_to_nested(cls: type, item: str) -> dict:
    """``--model.d_model=128`` -> validated ``{"model": {"d_model": 128}}``."""
    body = item[2:] if item.startswith("--") else item
    key, sep, text = body.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ConfigError(f"{item!r}: overrides look like --key=value (e.g. --steps=100)")
    nested: Any = text
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return _validate_mapping(cls, nested, item, "", from_text=True)


def _instantiate(cls: type, values: dict, where: str, base: Any = None) -> Any:
    """Build ``cls`` from validated ``values``; unset fields come from ``base`` or defaults.

    A partial mapping for a nested field updates that field's current value, so a
    ``default_factory=lambda: ModelConfig(d_model=64)`` keeps d_model=64 under
    ``--model.n_layers=2``.
    """
    kwargs: dict[str, Any] = {}
    hints = _fields(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        nested, _ = _nested_dataclass(hints[f.name])
        if base is not None:
            current = getattr(base, f.name)
        elif f.default_factory is not dataclasses.MISSING:
            current = f.default_factory()
        else:
            current = None if f.default is dataclasses.MISSING else f.default
        if f.name in values:
            kwargs[f.name] = values[f.name]
            if nested is not None and isinstance(values[f.name], dict):
                nested_base = current if isinstance(current, nested) else None
                kwargs[f.name] = _instantiate(nested, values[f.name], where, nested_base)
        elif base is not None:
            kwargs[f.name] = current
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key '{f.name}' for {cls.__name__}; "
                              f"set it in the recipe or pass --{f.name}=...")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        raise ConfigError(f"{where}: invalid {cls.__name__}: {exc}") from None


def load_config(cls: type, recipe: str | Path | None = None, overrides: list[str] = (),
                updates: dict | None = None, updates_where: str = "updates") -> Any:
    """Build ``cls`` from its defaults, then the YAML ``recipe``, then ``updates``, then
    ``overrides`` in order.

    Args:
        cls: a dataclass type (fields may themselves be dataclasses).
        recipe: path to a YAML file whose top level is a mapping of field names, or None.
        overrides: ``["--key=value", "model.d_model=128", ...]``; later ones win.
        updates: a nested mapping of field values (e.g. a pipeline recipe's settings for one
            stage), merged over the recipe; errors name it ``updates_where``.
    Raises ConfigError for unknown keys (with suggestions), wrong types, bad YAML, a missing
    recipe, missing required fields, and ValueError/TypeError raised by ``__post_init__``.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"load_config expects a dataclass type, got {cls!r}")
    where = str(recipe) if recipe is not None else "<defaults>"
    values: dict = {}
    if recipe is not None:
        values = _validate_mapping(cls, _read_recipe(recipe), where, "", from_text=False)
    if updates:
        values = _merge(values, _validate_mapping(cls, updates, updates_where, "", from_text=False))
    if isinstance(overrides, str):
        overrides = [overrides]
    for item in overrides:
        values = _merge(values, _override_to_nested(cls, item))
    return _instantiate(cls, values, f"{where} + overrides" if overrides else where)


def parse_overrides(argv: list[str]) -> tuple[str | None, list[str]]:
    """Split argv into ``(recipe, overrides)``.

    The recipe is ``--recipe=PATH`` / ``--config=PATH`` / ``--recipe PATH`` or a positional path
    ending in ``.yaml``/``.yml``. An override is ``--key=value`` or ``--key value``; ``--flag``
    followed by another ``--`` option (or nothing) means ``--flag=true``.

    >>> parse_overrides(["recipes/tiny.yaml", "--steps=5", "--compile"])
    ('recipes/tiny.yaml', ['--steps=5', '--compile=true'])
    >>> parse_overrides(["--model", "runs/x", "--n", "4", "--resume", "--lr", "-1e-3"])
    (None, ['--model=runs/x', '--n=4', '--resume=true', '--lr=-1e-3'])
    """
    recipe: str | None = None
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        item = argv[i]
        name, sep, value = item.partition("=")
        following = argv[i + 1] if i + 1 < len(argv) else None
        takes_next = not sep and following is not None and not following.startswith("--")
        if name in ("--recipe", "--config"):
            recipe = value if sep else following
            if recipe is None:
                raise ConfigError(f"{item}: expected a path, e.g. {item}=recipes/tiny.yaml")
            i += 1 if sep else 2
            continue
        if not sep and item.endswith((".yaml", ".yml")) and not item.startswith("-"):
            recipe = item
        elif sep:
            overrides.append(item)
        elif item.startswith("--") and len(item) > 2:
            overrides.append(f"{item}={following}" if takes_next else f"{item}=true")
            i += 1 if takes_next else 0
        else:
            raise ConfigError(f"unexpected argument {item!r}; overrides look like --key=value or --key value")
        i += 1
    return recipe, overrides


# ---- serialisation ---------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return value.item() if callable(getattr(value, "item", None)) else str(value)  # numpy/Path


def config_to_dict(cfg: Any) -> dict:
    """Nested, JSON-safe dict of a config dataclass (tuples -> lists, paths -> str)."""
    return {f.name: _jsonable(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomic); ``load_config(type(cfg), path)`` reads it back."""
    from reasonlab.io import atomic_write_text

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
    return atomic_write_text(path, text)


# ---- help ------------------------------------------------------------------------------------

def _field_comments(cls: type) -> dict[str, str]:
    """``name -> comment`` from the ``# ...`` after each field in the source of the class and of
    its dataclass bases ({} if none)."""
    import inspect

    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):              # base classes first: a subclass's comment wins
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        found = re.findall(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", source, flags=re.MULTILINE)
        out.update((name, comment.strip()) for name, comment in found)
    return out


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    return yaml.safe_dump(_jsonable(value), default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def describe_config(cls: type, prefix: str = "") -> list[str]:
    """One line per field of ``cls`` (nested dataclasses expanded): ``--key=default  # comment``.

    >>> @dataclasses.dataclass
    ... class Demo:
    ...     steps: int = 10    # optimiser steps
    >>> describe_config(Demo)
    ['  --steps=10  # optimiser steps']
    """
    comments = _field_comments(cls)
    hints = _fields(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        nested, _ = _nested_dataclass(hints[f.name])
        if nested is not None:
            lines += describe_config(nested, prefix + f.name + ".")
            continue
        note = f"  # {comments[f.name]}" if f.name in comments else ""
        lines.append(f"  --{prefix}{f.name}={_default_text(f)}{note}")
    return lines
