"""Which modules load without torch or Ray: the results, settings and report code do."""

from __future__ import annotations

import pytest
from conftest import run_cli

TORCH_FREE = (
    "grok.schema",
    "grok.config",
    "grok.search",
    "grok.experiment",
    "grok.checkpoint",
    "grok.results",
    "grok.storage",
    "grok.reuse",
    "grok.cluster",
    "grok.tracking",
    "grok.display",
    "plotting.study",
    "plotting.frames",
    "plotting.report",
)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch_or_ray(module):
    code = (
        f"import sys, {module}; "
        "heavy = sorted({'torch', 'ray'} & set(sys.modules)); "
        "assert not heavy, heavy"
    )
    proc = run_cli("-c", code)
    assert proc.returncode == 0, proc.stderr


def test_the_check_itself_sees_torch_when_a_module_imports_it():
    proc = run_cli("-c", "import sys, grok.train; assert 'torch' not in sys.modules")
    assert proc.returncode == 1 and "AssertionError" in proc.stderr
