"""BIG-bench task files, fetched once from the `bigbench` sdist on PyPI and cached.

The sdist (about 360 MB) holds every task's `task.json`; only the tasks asked for are
extracted, into `<attnlab cache>/bigbench/<task>.json`. The download uses pip itself
(`pip download --no-deps --no-binary :all: bigbench==1.0.0`), so it goes through the
same package index as every other install, and happens only once per machine.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.0.0"
MEMBER = "bigbench-{v}/bigbench/benchmark_tasks/{task}/task.json"


def cache_dir() -> Path:
    from ..models import cache_root

    return cache_root() / "bigbench"


def task_file(task: str) -> Path:
    """Path of the cached task.json of `task`, fetching the sdist if it is not cached yet."""
    path = cache_dir() / f"{task}.json"
    if not path.exists():
        fetch([task])
    return path


def fetch(tasks) -> list[Path]:
    """Download the bigbench sdist once and extract the given tasks' task.json into the cache."""
    tasks = [t for t in tasks if not (cache_dir() / f"{t}.json").exists()]
    if not tasks:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
               f"bigbench=={VERSION}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise FileNotFoundError(f"could not download the bigbench sdist with pip: {done.stderr.strip()[-400:]}")
        return _extract(Path(tmp) / f"bigbench-{VERSION}.tar.gz", tasks)


def _extract(archive: Path, tasks: list[str]) -> list[Path]:
    wanted = {MEMBER.format(v=VERSION, task=t): t for t in tasks}
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            task = wanted.get(member.name)
            if task is None:
                continue
            data = tar.extractfile(member).read()
            tmp = out / f".{task}.json.part"
            tmp.write_bytes(data)
            tmp.replace(out / f"{task}.json")  # atomic: no half-written cache entry
            written.append(out / f"{task}.json")
    missing = set(tasks) - {p.stem for p in written}
    if missing:
        raise FileNotFoundError(f"bigbench {VERSION} has no task(s) {sorted(missing)}")
    return written
