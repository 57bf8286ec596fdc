"""The examples in the docstrings run, and say what they show: every module with one is run by doctest."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gpuseg"
WITH_EXAMPLES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
    if ">>>" in p.read_text()
)


def test_the_public_api_has_examples():
    public = ("gpuseg.params", "gpuseg.options", "gpuseg.engines.run", "gpuseg.features", "gpuseg.io.read",
              "gpuseg.scale.inputs", "gpuseg.scale.many", "gpuseg.scale.stack", "gpuseg.scale.chunked.run",
              "gpuseg.segmentation.pipeline", "gpuseg.segmentation.outputs", "gpuseg.tuning.suggest")  # fmt: skip
    for name in public:
        assert name in WITH_EXAMPLES, f"{name} has no docstring example"


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (run doctest -v)"
