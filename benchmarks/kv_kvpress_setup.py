"""Create the separate environment kvpress runs in (kvpress 0.5.5 pins transformers < 5.3).

    python3 benchmarks/kv_kvpress_setup.py      # -> /work/main/.venv-kvpress

torch stays at 2.13.0 (the CPU wheel on this machine); attnlab is NOT installed there: the
kvpress side (benchmarks/kv_kvpress_run.py) loads SmolLM2 from attnlab's dequantized
safetensors folder (`attnlab.models.resolve()`), passed on its command line.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

VENV = Path(__file__).resolve().parent.parent / ".venv-kvpress"
PACKAGES = ["kvpress==0.5.5", "torch==2.13.0"]


def main() -> None:
    if not (VENV / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    py = str(VENV / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", *PACKAGES], check=True)
    out = subprocess.run([py, "-c", "import kvpress, transformers, torch; "
                          "print(kvpress.__file__, transformers.__version__, torch.__version__)"],
                         check=True, capture_output=True, text=True)
    print(out.stdout.strip())


if __name__ == "__main__":
    sys.exit(main())
