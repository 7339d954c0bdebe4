"""Small C kernels, compiled on first use by the system C compiler and loaded with ctypes.

No torch headers and no Python extension module: `rowpass.c` becomes one shared library
in the attnlab cache, named by a hash of the source, the flags and the CPU, so a changed
source or another CPU builds a fresh one (it is compiled with -march=native). When no
compiler is found or the build fails, `rowpass_library()` returns None and callers keep
their torch path; ATTNLAB_NATIVE=0 turns the native path off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SOURCE = Path(__file__).with_name("rowpass.c")
# -ffast-math lets gcc vectorize the row sums (reassociation); it is given to
# the compile step only: linked with it, gcc adds crtfastmath.o, which would switch the
# whole process (torch included) to flush-to-zero arithmetic when the library loads
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-ffast-math", "-fopenmp", "-fPIC"]
LINK = ["-shared", "-fopenmp"]
_lock = threading.Lock()
_loaded: dict = {}


def _cpu() -> str:
    """The CPU's model and instruction-set flags (the library is built for them)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return os.uname().machine


def _build(cc: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        obj, out = Path(tmp) / "rowpass.o", Path(tmp) / target.name
        subprocess.run([cc, *FLAGS, "-c", "-o", str(obj), str(SOURCE)], check=True, capture_output=True, text=True)
        subprocess.run([cc, *LINK, "-o", str(out), str(obj), "-lm"], check=True, capture_output=True, text=True)
        os.replace(out, target)  # atomic: a concurrent process sees the whole file or none


def rowpass_library():
    """The loaded rowpass library (ctypes), or None when native code is off or cannot be built."""
    if os.environ.get("ATTNLAB_NATIVE", "1") == "0":
        return None
    with _lock:
        if "rowpass" in _loaded:
            return _loaded["rowpass"]
        lib = None
        cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
        if cc is not None:
            from ..models import cache_root

            key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS + LINK).encode() + _cpu().encode()).hexdigest()[:16]
            target = cache_root() / "native" / f"rowpass-{key}.so"
            try:
                if not target.exists():
                    _build(cc, target)
                lib = ctypes.CDLL(str(target))
                lib.softmax_rows.restype = None
                lib.softmax_rows.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_long,
                                             ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p,
                                             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
            except (OSError, subprocess.CalledProcessError):
                lib = None
        _loaded["rowpass"] = lib
        return lib


def softmax_rows(scores, probs, own: int | None = None):
    """Softmax of one block and its row and column sums: scores [B, H, q, K] (masked logits).

    Writes probs (same shape) = softmax(scores) over the last axis. own: for a causal block
    whose future keys are not masked yet, the key index (from the block's first key) of the
    first query's own position: query row i sees keys < own + i + 1, the others are set to
    the fp32 minimum in scores and to 0 in probs; None: scores are masked already. Contiguous fp32 CPU
    tensors of one shape. Returns (lse, dot, key_mean, col): lse = ln sum_j exp(s_ij),
    dot = sum_j p_ij s_ij and key_mean = sum_j p_ij j (j from 0 at the block's first key),
    each [B, H, q] fp32; col = sum_i p_ij, [B, H, K] fp64. Requires `rowpass_library()`.
    """
    import torch

    ok = all(t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous() for t in (scores, probs))
    if not ok or scores.shape != probs.shape:  # the C code walks raw memory
        raise ValueError("softmax_rows: scores and probs must be contiguous fp32 CPU tensors of one shape")
    lib = rowpass_library()
    b, h, q, k = scores.shape
    threads = max(1, torch.get_num_threads())
    lse, dot, mean = torch.empty(b, h, q), torch.empty(b, h, q), torch.empty(b, h, q)
    col = torch.empty(threads, b, h, k, dtype=torch.float64)
    lib.softmax_rows(scores.data_ptr(), probs.data_ptr(), b * h, q, k, k if own is None else own, lse.data_ptr(),
                     dot.data_ptr(), mean.data_ptr(), col.data_ptr(), threads)
    return lse, dot, mean, col.sum(0) if threads > 1 else col[0]
