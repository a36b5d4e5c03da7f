"""hubtune's tests: a package, so tests import their helpers as `tests.support.…`."""
