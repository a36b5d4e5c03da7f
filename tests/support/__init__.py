"""Helpers the tests import (`from tests.support.tiny_models import …`); the scripts here that
run as files (torchrun ranks, the warm worker) put the repository root on `sys.path`."""

import importlib.util

import pytest

needs_cleanlab = pytest.mark.skipif(importlib.util.find_spec("cleanlab") is None,
                                    reason="needs cleanlab (the audit extra)")
"""For audit tests: found without importing it (cleanlab's import costs about 2 s, paid at
collection by every test process that would never run an audit test)."""
