"""Helpers the tests import (`from tests.support.tiny_models import …`); the scripts here that
run as files (torchrun ranks, the warm worker) put the repository root on `sys.path`."""
