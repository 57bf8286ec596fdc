"""Where gpuseg keeps what it makes once per machine: compiled kernels (numba's cache) and first-run markers.

Numba caches compiled kernels beside their source files unless told otherwise, which for an installed package
means inside ``site-packages`` (left behind by ``pip uninstall``, and not writable for every user). gpuseg points
numba's cache at the user's cache folder, for the library, the command line, Dask workers and the service alike,
before numba is first imported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_dir() -> Path:
    """gpuseg's cache folder: ``$XDG_CACHE_HOME/gpuseg`` or ``~/.cache/gpuseg``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpuseg"


def use_user_cache() -> None:
    """Point numba's kernel cache at :func:`cache_dir` (unless NUMBA_CACHE_DIR is set, or numba is loaded)."""
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))
