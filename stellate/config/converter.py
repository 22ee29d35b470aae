"""A strict cattrs converter: the YAML's types must already be right, nothing is coerced.

cattrs' defaults are made for trusted data and convert quietly: ``"false"`` becomes ``True``,
``"8080"`` becomes ``8080``, ``3.9`` becomes ``3`` and a string given for a list becomes a list of
its characters. For a hand-edited config each of those hides a mistake, so every hook here
accepts exactly one shape and raises :class:`TypeMismatch` for anything else. The only widening is
an integer where a float is wanted (``heartbeat_interval: 30``); a boolean is never a number.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin

import attrs
from cattrs import Converter
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from ..errors import InvalidFields, LocalError
from .model import INLINE
from .problems import describe

_NONE_TYPE = type(None)


class TypeMismatch(LocalError, TypeError):
    """A value of the wrong YAML type. Keeps the value apart so a secret can be left out."""

    def __init__(self, expected: str, value: Any) -> None:
        self.expected = expected
        self.value = value
        super().__init__(self.message())

    def message(self, *, redact: bool = False) -> str:
        return f"expected {self.expected}, got {describe(self.value, redact=redact)}"


def _exact_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise TypeMismatch("a string", value)
    return value


def _exact_bool(value: Any, _type: type) -> bool:
    if not isinstance(value, bool):
        raise TypeMismatch("a boolean (true or false)", value)
    return value


def _exact_int(value: Any, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeMismatch("an integer", value)
    return value


def _exact_float(value: Any, _type: type) -> float:
    # An int is a number too (``heartbeat_interval: 30``); a bool is not.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeMismatch("a number", value)
    return float(value)


def _is_optional(type_: Any) -> bool:
    args = get_args(type_)
    return get_origin(type_) in (Union, types.UnionType) and len(args) == 2 and _NONE_TYPE in args


def _is_homogeneous_tuple(type_: Any) -> bool:
    args = get_args(type_)
    return get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_plain_dict(type_: Any) -> bool:
    return get_origin(type_) is dict


def _optional_hook(converter: Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(type_: Any) -> Callable[[Any, Any], Any]:
        inner_type = next(arg for arg in get_args(type_) if arg is not _NONE_TYPE)
        inner = converter.get_structure_hook(inner_type)

        def hook(value: Any, _type: Any) -> Any:
            if value is None:
                return None
            try:
                return inner(value, inner_type)
            except TypeMismatch as exc:
                raise TypeMismatch(f"{exc.expected} or null", value) from None

        return hook

    return factory


def _tuple_hook(converter: Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    """A YAML list (only a list: a string is not a list of characters), every item checked."""

    def factory(type_: Any) -> Callable[[Any, Any], Any]:
        item_type = get_args(type_)[0]
        item_hook = converter.get_structure_hook(item_type)

        def hook(value: Any, _type: Any) -> tuple[Any, ...]:
            if not isinstance(value, list):
                raise TypeMismatch("a list", value)
            items: list[Any] = []
            errors: list[Exception] = []
            for index, item in enumerate(value):
                try:
                    items.append(item_hook(item, item_type))
                except Exception as exc:
                    exc.__notes__ = [
                        *getattr(exc, "__notes__", []),
                        IterableValidationNote(f"Structuring item {index}", index, item_type),
                    ]
                    errors.append(exc)
            if errors:
                raise IterableValidationError(f"While structuring {type_!r}", errors, tuple)
            return tuple(items)

        return hook

    return factory


def _dict_hook(value: Any, _type: Any) -> dict[str, Any]:
    """A YAML mapping, copied; its keys and values are checked by the model's rules."""
    if not isinstance(value, dict):
        raise TypeMismatch("a mapping", value)
    return dict(value)


def inline_fields(cls: Any) -> dict[str, list[str]]:
    """``{field: [its own field names]}`` for the fields of ``cls`` written inline (``INLINE``)."""
    return {
        field.name: [sub.name for sub in attrs.fields(field.type)]
        for field in attrs.fields(attrs.resolve_types(cls))
        if field.metadata.get(INLINE)
    }


def known_keys(cls: Any) -> list[str]:
    """The keys a mapping for ``cls`` may hold: its fields, inline ones replaced by theirs."""
    inline = inline_fields(cls)
    keys: list[str] = []
    for field in attrs.fields(cls):
        keys += inline.get(field.name, [field.name])
    return keys


def _nest(value: dict[Any, Any], inline: dict[str, list[str]]) -> tuple[dict[Any, Any], list[str]]:
    """The mapping as the class takes it: each inline field's keys gathered under its name.
    Also returns the keys that spell an inline field's own name, which the file may not use."""
    owner = {key: name for name, keys in inline.items() for key in keys}
    nested: dict[Any, Any] = {}
    for key, item in value.items():
        if key in inline:
            continue
        if key in owner:
            nested.setdefault(owner[key], {})[key] = item
        else:
            nested[key] = item
    return nested, [key for key in value if key in inline]


def _attrs_hook(converter: Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    """cattrs' generated hook (all fields checked, unknown keys refused), fed only mappings.

    When some fields have the wrong type the instance is never built, so its rules never run;
    for a class with a ``rule_violations(values)`` classmethod the hook then runs the rules on
    the fields that were fine, and reports those problems alongside the type errors.

    A field marked ``INLINE`` is an attrs class whose keys sit beside the others in the file:
    they are gathered under the field's name before structuring (the findings leave that name
    out of the paths again, so a problem points at the key as written).
    """

    def factory(cls: Any) -> Callable[[Any, Any], Any]:
        attrs.resolve_types(cls)
        inner = make_dict_structure_fn(cls, converter)
        rules = getattr(cls, "rule_violations", None)
        inline = inline_fields(cls)

        def structure(value: dict[Any, Any]) -> Any:
            try:
                return inner(value, cls)
            except ClassValidationError as exc:
                constructed = any(isinstance(sub, InvalidFields) for sub in exc.exceptions)
                if rules is None or constructed:  # types were fine; the rules already ran
                    raise
                violations = rules(_well_typed_fields(converter, cls, value))
                if not violations:
                    raise
                raise ClassValidationError(
                    exc.message, [*exc.exceptions, InvalidFields(violations)], cls
                ) from None

        def hook(value: Any, _type: Any) -> Any:
            if not isinstance(value, dict):
                raise TypeMismatch("a mapping", value)
            if not inline:
                return structure(value)
            nested, spelled = _nest(value, inline)
            errors: list[Exception] = []
            try:
                result = structure(nested)
            except ClassValidationError as exc:
                errors += exc.exceptions
            if spelled:
                errors.append(ForbiddenExtraKeysError("", cls, set(spelled)))
            if errors:
                raise ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
            return result

        return hook

    return factory


def _well_typed_fields(converter: Converter, cls: Any, value: dict[Any, Any]) -> dict[str, Any]:
    """The fields of ``value`` that structure cleanly on their own, defaults for the rest."""
    good: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if field.name in value:
            try:
                good[field.name] = converter.structure(value[field.name], field.type)
            except Exception:  # reported already, by the structuring that failed
                continue
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            good[field.name] = field.default.factory()
        elif field.default is not attrs.NOTHING:
            good[field.name] = field.default
    return good


def make_converter() -> Converter:
    """A fresh strict converter. Unknown keys are refused; every problem is collected."""
    converter = Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _exact_str)
    converter.register_structure_hook(bool, _exact_bool)
    converter.register_structure_hook(int, _exact_int)
    converter.register_structure_hook(float, _exact_float)
    converter.register_structure_hook_func(_is_plain_dict, _dict_hook)
    converter.register_structure_hook_factory(_is_optional, _optional_hook(converter))
    converter.register_structure_hook_factory(_is_homogeneous_tuple, _tuple_hook(converter))
    converter.register_structure_hook_factory(attrs.has, _attrs_hook(converter))
    return converter


#: The converter the loader uses. Hooks are generated lazily, once per class.
CONVERTER = make_converter()
