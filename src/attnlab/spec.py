"""The one text form for named things with parameters: 'name:key=value,key=value'.

Used for kernels (`streaming:sinks=4,window=1020`) and modifiers
(`sink_scale:factor=0.5,layers=0-5`). Values become int, float, bool or None when they
read as one, else stay text.
"""

from __future__ import annotations


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
    params = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"bad {what} {item!r} in {spec!r}; expected key=value")
        params[key.strip()] = parse_value(value.strip())
    return name.strip(), params
