import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def smollm2():
    """The real default model (SmolLM2-135M-Instruct), loaded once per test session."""
    import attnlab

    return attnlab.load()


@pytest.fixture(scope="session")
def hamlet():
    from attnlab.bench.corpora import shakespeare

    return shakespeare("hamlet")
