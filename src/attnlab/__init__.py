"""attnlab: see, steer, speed up and tune the attention of any Hugging Face transformer.

Importing attnlab is cheap: torch, transformers and plotting libraries load only when a
function that needs them is called.
"""

from __future__ import annotations

from ._lazy import exports as _exports

__version__ = "0.1.0"

_EXPORTS = {
    "load": "attnlab.models",
    "EMBEDDED": "attnlab.models",
    "attach": "attnlab.core.session",
    "Session": "attnlab.core.session",
    "UnsupportedModelError": "attnlab.core.session",
    "AttnCall": "attnlab.core.call",
    "KernelOutput": "attnlab.core.call",
    "KERNELS": "attnlab.kernels",
    "encode": "attnlab.text",
    "InputError": "attnlab.text",
    "layout": "attnlab.layout",
    "head_stats": "attnlab.observe.heads",
    "head_kinds": "attnlab.observe.kinds",
}

__all__ = sorted(_EXPORTS)

__getattr__ = _exports(__name__, _EXPORTS)
