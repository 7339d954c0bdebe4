"""The one text form for named things with parameters: 'name:key=value,key=value'.

Used for kernels (`streaming:sinks=4,window=1020`) and modifiers
(`sink_scale:factor=0.5,layers=0-5`). Values become int, float, bool or None when they
read as one, else stay text.
"""

from __future__ import annotations

from .errors import SpecError


def parse_value(text: str):
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, 'none' -> None, anything else unchanged."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    return text


def split_spec(spec: str, what: str = "parameter") -> tuple[str, dict]:
    """'name:a=1,b=x' -> ('name', {'a': 1, 'b': 'x'}), not validated against any registry."""
    name, _, rest = spec.partition(":")
    if not name.strip():
        raise SpecError(f"bad spec {spec!r}; expected name:key=value,...")
    params = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SpecError(f"bad {what} {item!r} in {spec!r}; expected key=value")
        params[key.strip()] = parse_value(value.strip())
    return name.strip(), params


_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}


def allowed_types(annotation, default) -> set | None:
    """The types a parameter takes, from its annotation text ('int | None') or its default's type.

    None when nothing is known (no annotation, no default, or a type not in int/float/bool/str).
    """
    names = [t.strip() for t in str(annotation).split("|")] if isinstance(annotation, str) else []
    if names and all(n in _TYPES for n in names):
        return {_TYPES[n] for n in names}
    if isinstance(annotation, type) and annotation in _TYPES.values():
        return {annotation}
    if default is None or type(default) not in _TYPES.values():
        return None
    return {type(default)}


def check_type(value, types: set | None) -> bool:
    """Whether `value` fits `types`: any integer (numpy's too) fits int, any real number fits
    float, a bool fits only bool; unknown types (None) accept everything."""
    from numbers import Integral, Real

    if types is None:
        return True
    if isinstance(value, bool):
        return bool in types
    if value is None or isinstance(value, str):
        return type(value) in types
    return (int in types and isinstance(value, Integral)) or (float in types and isinstance(value, Real))


def type_names(types: set) -> str:
    """{int, NoneType} -> 'int or none'."""
    return " or ".join(sorted("none" if t is type(None) else t.__name__ for t in types))
