"""Every CUDA kernel compiles for a real GPU (PTX), checked without one; see tests/engines/cuda_ptx.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every CUDA kernel compiled to PTX: a minute and more

MISSING_TOOLKIT = ("NvvmSupportError", "DynamicLibNotFoundError", "libnvvm", "libnvrtc")


def test_every_cuda_kernel_compiles_to_ptx():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    script = Path(__file__).with_name("cuda_ptx.py")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    if run.returncode and any(word in run.stderr for word in MISSING_TOOLKIT):
        pytest.skip("NVIDIA's NVVM/NVRTC libraries are not installed (pip install -e '.[test]' installs them)")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "compiled" in run.stdout
