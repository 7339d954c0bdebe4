"""Multiple-choice tasks: items with a prompt, choices and the index of the right one.

Tasks come from BIG-bench task files (see `bigbench.py`), formatted zero-shot the way
BIG-bench formats them: task_prefix + example_input_prefix ("\\nQ: ") + input
[+ "\\n  choice: ..." lines when the task appends its choices] + example_output_prefix
("\\nA: "), trailing whitespace stripped; each choice is scored as " " + choice.

TASKS lists the tasks attnlab ships (chosen because SmolLM2-135M is measurably above
chance on them, see docs/steer.md); any BIG-bench json task name or a task.json path works.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, OptionError

TASKS = {  # measured zero-shot on SmolLM2-135M, first 50 items (benchmarks/steer_task_screen.py)
    "emoji_movie": "which of 5 movies an emoji string describes (0.66 vs chance 0.20)",
    "general_knowledge": "everyday facts, ~7.6 choices (0.48 vs chance 0.13)",
    "hindu_knowledge": "facts about Hindu mythology, 4 choices (0.38 vs chance 0.24)",
}
SPLITS = ("all", "dev", "test")


@dataclass(frozen=True)
class Item:
    """One question. answer: index of the (first) correct choice."""

    prompt: str
    choices: tuple[str, ...]
    answer: int


def load_task(name: str, split: str = "all", limit: int | None = None) -> list[Item]:
    """Items of a task (a BIG-bench task name or a task.json path), optionally one split.

    split: 'dev' / 'test' is a fixed half of the items chosen by a hash of the prompt (the
    same split on every machine); limit keeps the first `limit` items of that split.
    """
    if split not in SPLITS:
        raise OptionError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    data = _read_json(_task_path(name))
    items = [it for ex in data.get("examples", []) if (it := _item(data, ex)) is not None]
    if not items:
        raise InputError(f"task {name!r} has no multiple-choice examples (target_scores)")
    if split != "all":
        items = [it for it in items if _split_of(it) == split]
    return items[:limit] if limit else items


def _read_json(path: Path) -> dict:
    """A task.json as a dict; unreadable or malformed files are an InputError."""
    from ..text import read_text

    try:
        data = json.loads(read_text(path, "--task"))
    except json.JSONDecodeError as exc:
        raise InputError(f"--task: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"--task: {path} is not a BIG-bench task (a JSON object with 'examples')")
    return data


def _task_path(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".json":
        if not path.exists():
            raise FileNotFoundError(f"no task file {name}")
        return path
    from .bigbench import task_file

    return task_file(name)


def _item(task: dict, ex: dict) -> Item | None:
    scores = ex.get("target_scores")
    if not scores or len(scores) < 2:
        return None
    choices = tuple(str(c) for c in scores)
    best = max(scores.values())
    prompt = task.get("task_prefix", "") + task.get("example_input_prefix", "\nQ: ") + ex["input"]
    if task.get("append_choices_to_input", True):
        prompt += "".join(task.get("choice_prefix", "\n  choice: ") + c for c in choices)
    prompt += task.get("example_output_prefix", "\nA: ")
    return Item(prompt.strip(), choices, list(scores.values()).index(best))


def _split_of(item: Item) -> str:
    digest = hashlib.sha256(item.prompt.encode()).digest()
    return "dev" if digest[0] % 2 == 0 else "test"


def chance(items: list[Item]) -> float:
    """Expected accuracy of a uniform random guess over each item's choices."""
    return sum(1.0 / len(it.choices) for it in items) / len(items)
