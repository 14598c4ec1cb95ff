"""How a stack setting is declared, and the one parser that reads stack values into declarations.

A setting is a field of a frozen dataclass made with :func:`setting`: its config key (the field
name in camelCase unless given), description, default (none: the stack must give it), allowed
values or bounds, and optionally a ``parse`` converter that may refuse a value (``ValueError``,
its message is the problem). The JSON type comes from the annotation: ``str``, ``int``,
``bool``, ``tuple[str | int, ...]`` (array), ``Mapping[str, str | int]`` (object), another
declared dataclass (a nested object, or ``nested=`` when ``parse`` turns it into something else),
``tuple[Declared, ...]`` of a class with an :func:`entry_name` field (a map by name, e.g.
``models.<name>``), and ``X | None`` (may be unset). Other types give ``type=`` and ``parse``.

:func:`parse` reads values in two passes and reports every problem by key into a
:class:`Checks`:

1. every field: unknown fields, missing required ones, JSON type, choices, bounds, ``parse``. A
   bad value is reported and replaced by a placeholder so the rest is still read. A field the
   class lists in its ``REMOVED_FIELDS`` mapping (key -> what replaced it) is reported with that
   message instead of as unknown;
2. the cross-field rules: a declared class may define ``check(self, c, at, root)``. It runs on
   every object whose own fields were all good, children before their parent; ``at`` is the
   object's key (``models.mnist``) and ``root`` the whole parsed object.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import date
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

JsonType = Literal["string", "integer", "boolean", "array", "object"]
_METADATA = "tfserving-eks.setting"
_ENTRY_NAME = "tfserving-eks.entry-name"
_MISSING, _BAD = object(), object()
_SCALARS: dict[Any, JsonType] = {str: "string", int: "integer", bool: "boolean"}
_IS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class SettingError(ValueError):
    """Raised by a ``parse`` converter; ``at`` names a part of the value (``kube-proxy``)."""

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.at = at


@dataclass(frozen=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class Checks:
    """Collects problems (and warnings) instead of stopping at the first; ``today`` dates the
    rules that depend on the calendar."""

    def __init__(self, today: date | None = None) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.today = today or date.today()
        self._bad: dict[int, object] = {}  # objects holding a placeholder (kept alive: ids)

    def fail(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def ok(self, obj: object) -> bool:
        """Every field of ``obj`` was read without a problem (no placeholder in it)."""
        return id(obj) not in self._bad


@dataclass(frozen=True)
class Declared:
    """One declared field: ``items`` types an array's elements, ``values`` an object's values;
    ``nested`` is the declared class of a nested object or of each entry (``by_name``)."""

    field: str
    key: str
    type: JsonType | None
    doc: str
    default: Any
    minimum: int | None
    maximum: int | None
    choices: tuple[Any, ...]
    parse: Callable[[Any], Any] | None
    hint: str
    items: JsonType | None = None
    values: JsonType | None = None
    nested: type | None = None
    by_name: bool = False
    optional: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def setting(
    key: str = "",
    *,
    doc: str,
    default: Any = REQUIRED,
    type: JsonType | None = None,  # the JSON type, as in Pulumi.yaml
    minimum: int | None = None,
    maximum: int | None = None,
    choices: Iterable[Any] = (),
    parse: Callable[[Any], Any] | None = None,
    nested: type | None = None,
    hint: str = "",
) -> Any:
    """A declared field. ``default`` is written as in the stack file (JSON); ``hint`` says why a
    bound or choice holds and is added to the generic problems of this field."""
    spec = Declared("", key, type, doc, default, minimum, maximum, tuple(choices), parse, hint,
                    nested=nested)  # fmt: skip
    return field(metadata={_METADATA: spec})


def entry_name(placeholder: str, *, parse: Callable[[str], Any] | None = None) -> Any:
    """The field holding a map entry's name (its key in the stack file, ``<placeholder>`` in the
    docs); ``parse`` refuses a bad name."""
    return field(metadata={_ENTRY_NAME: (placeholder, parse)})


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def entry_field(cls: Any) -> tuple[str, str, Callable[[str], Any] | None] | None:
    """``(field, placeholder, parse)`` of the class's entry name, if it is a map entry."""
    for f in fields(cls):
        if _ENTRY_NAME in f.metadata:
            return (f.name, *f.metadata[_ENTRY_NAME])
    return None


def _name_field(cls: Any) -> str:
    entry = entry_field(cls)
    assert entry is not None, cls
    return entry[0]


def _resolve(cls: type, name: str, spec: Declared, hint: Any) -> Declared:
    optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
    if optional:
        hint = next(a for a in get_args(hint) if a is not type(None))
    origin, args = get_origin(hint), get_args(hint)
    extra: dict[str, Any] = {}
    if spec.nested is not None:
        json_type = "object"
    elif spec.type is not None:
        json_type = spec.type
    elif hint in _SCALARS:
        json_type = _SCALARS[hint]
    elif origin is tuple and is_dataclass(args[0]) and entry_field(args[0]):
        json_type, extra["nested"], extra["by_name"] = "object", args[0], True
    elif origin is tuple and args[0] in _SCALARS:
        json_type, extra["items"] = "array", _SCALARS[args[0]]
    elif origin is Mapping and args[1] in _SCALARS:
        json_type, extra["values"] = "object", _SCALARS[args[1]]
    elif is_dataclass(hint):
        json_type, extra["nested"] = "object", hint
    else:
        raise TypeError(f"{cls.__name__}.{name}: {hint} has no JSON type; give type= and parse=")
    key = spec.key or _camel(name)
    return replace(spec, field=name, key=key, type=json_type, optional=optional, **extra)


@cache
def declarations(cls: type) -> dict[str, Declared]:
    """The declared fields of ``cls`` by config key, in declaration order."""
    hints = get_type_hints(cls)
    found = [
        _resolve(cls, f.name, f.metadata[_METADATA], hints[f.name])
        for f in fields(cls)
        if _METADATA in f.metadata
    ]
    return {d.key: d for d in found}


def description(cls: type) -> str:
    """A declared class's docstring on one line: the description of its object in the docs."""
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split())


# --- words --------------------------------------------------------------------------------------


def type_text(d: Declared) -> str:
    return f"array of {d.items}" if d.items else d.type


def allowed_text(d: Declared) -> str:
    """The allowed values or range, in words; empty when there is none."""
    if d.choices:
        return ", ".join(str(c) for c in d.choices)
    if d.minimum is not None and d.maximum is not None:
        return f"{d.minimum} to {d.maximum}"
    if d.minimum is not None:
        return f"at least {d.minimum}"
    if d.maximum is not None:
        return f"at most {d.maximum}"
    return ""


def _one_of(choices: Iterable[Any]) -> str:
    *first, last = (str(c) for c in choices)
    return f"{', '.join(first)} or {last}" if first else last


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def _expected(d: Declared) -> str:
    if d.nested is not None and not d.by_name:
        return f"an object of {', '.join(declarations(d.nested))}"
    what = {"boolean": "true or false", "integer": "an integer", "object": "an object"}
    text = what.get(d.type, f"a {type_text(d)}" if d.type == "string" else f"an {type_text(d)}")
    allowed = allowed_text(d)
    return f"{text} ({allowed})" if allowed else text


# --- pass 1: every field ------------------------------------------------------------------------


def _key(at: str, key: str) -> str:
    return f"{at}.{key}" if at and key else at or key


def _placeholder(d: Declared) -> Any:
    """What a bad value is replaced with: the default, else a neutral value of the type."""
    if not d.required and d.default is not None:
        value = _convert(d, d.default, "", Checks())
        if value is not _BAD:  # (a default may be there for the docs only, e.g. an empty list)
            return value
    if d.by_name:
        return ()
    if d.optional or d.nested is not None:
        return None
    zero = {"string": "", "integer": d.minimum or 0, "boolean": False, "array": ()}
    return zero.get(d.type, types.MappingProxyType({}))


def _read_value(d: Declared, raw: Any, key: str, c: Checks) -> tuple[Any, bool]:
    """The value of one field and whether it is good (else it is a placeholder)."""
    value = _convert(d, raw, key, c)
    return (_placeholder(d), False) if value is _BAD else (value, True)


def _convert(d: Declared, raw: Any, key: str, c: Checks) -> Any:
    """The value of one field, or ``_BAD`` after reporting why it is not usable."""
    why = f" ({d.hint})" if d.hint else ""
    if raw is _MISSING:
        if d.required:
            c.fail(key, f"missing: give {_expected(d)}")
            return _BAD
        raw = d.default
    if raw is None and (d.optional or d.default is None):
        return None
    if not _IS[d.type](raw) or not all(_IS[d.items or d.values or "string"](v) for v in (
        raw if d.items else raw.values() if d.values else ()
    )):  # fmt: skip
        of = f" of {d.items or d.values}" if d.items or d.values else ""
        c.fail(key, f"expected {d.type}{of}, got {_json(raw)}{why}")
        return _BAD
    if d.by_name:
        name = _name_field(d.nested)
        return tuple(read(d.nested, v, _key(key, k), c, **{name: k}) for k, v in raw.items())
    value: Any = raw
    if d.nested is not None:
        value = read(d.nested, raw, key, c)
        if d.parse is None:
            return value  # a bad nested object is marked itself
        if not c.ok(value):
            return _BAD
    elif d.type == "array":
        value = tuple(raw)
    elif d.type == "object":
        value = types.MappingProxyType(dict(raw))
    given = value if d.type == "array" else [value]
    wrong = [v for v in given if d.choices and v not in d.choices]
    if wrong:
        c.fail(key, f"{wrong[0]!r}: use {_one_of(d.choices)}{why}")
        return _BAD
    if d.type == "integer" and not _in_bounds(d, raw):
        bound = allowed_text(d).replace(" to ", " and ")
        bound = f"between {bound}" if " and " in bound else bound
        c.fail(key, f"{raw} is out of range: use a value {bound}{why}")
        return _BAD
    if d.parse is not None:
        try:
            value = d.parse(value)
        except ValueError as exc:
            c.fail(_key(key, getattr(exc, "at", "")), str(exc))
            return _BAD
    return value


def _in_bounds(d: Declared, value: int) -> bool:
    return (d.minimum is None or value >= d.minimum) and (d.maximum is None or value <= d.maximum)


def read(cls: Any, raw: Any, at: str, c: Checks, **fixed: Any) -> Any:
    """Pass 1 for one object of ``cls`` at key ``at``: every declared field read from ``raw``
    (unknown fields reported), ``fixed`` giving the fields that are not settings."""
    declared = declarations(cls)
    good = True
    entry = entry_field(cls)
    if entry is not None and entry[2] is not None:
        try:
            entry[2](fixed[entry[0]])
        except ValueError as exc:
            c.fail(at, str(exc))
            good = False
    into = c
    if not isinstance(raw, dict):
        c.fail(at, f"expected an object of {', '.join(declared)}, got {_json(raw)}")
        raw, into, good = {}, Checks(), False  # its placeholders, silently
    removed: Mapping[str, str] = getattr(cls, "REMOVED_FIELDS", {})  # field -> what replaced it
    for extra in sorted(set(raw) - set(declared)):
        if extra in removed:  # a field that existed once: say what replaced it
            c.fail(_key(at, extra), removed[extra])
        else:
            c.fail(at, f"unknown field {extra!r}; known fields: {', '.join(sorted(declared))}")
    values = {}
    for key, d in declared.items():
        values[d.field], ok = _read_value(d, raw.get(key, _MISSING), _key(at, key), into)
        good = good and ok
    obj = cls(**values, **fixed)
    if not good:
        c._bad[id(obj)] = obj
    return obj


# --- pass 2: the cross-field rules --------------------------------------------------------------


def run_checks(obj: Any, at: str, c: Checks, root: Any) -> None:
    """Runs ``check`` of every declared object in ``obj``'s tree, children first."""
    for d in declarations(type(obj)).values():
        value = getattr(obj, d.field)
        if d.by_name:
            name = _name_field(d.nested)
            for entry in value:
                run_checks(entry, _key(_key(at, d.key), getattr(entry, name)), c, root)
        elif d.nested is not None and isinstance(value, d.nested):
            run_checks(value, _key(at, d.key), c, root)
    hook = getattr(obj, "check", None)
    if hook is not None and c.ok(obj):
        hook(c, at, root)


def parse(cls: type, values: Mapping[str, Any], c: Checks, **fixed: Any) -> Any:
    """Both passes over a whole object (the stack's top level: ``at`` is empty)."""
    obj = read(cls, dict(values), "", c, **fixed)
    run_checks(obj, "", c, obj)
    return obj
