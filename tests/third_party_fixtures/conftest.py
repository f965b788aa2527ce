"""Fixture modules for the verify and audit tests: targets, not tests.

They import their framework at import time, and one raises on import on purpose, so none of them
is collected (not even for doctests); the tests import them by name.
"""

collect_ignore_glob = ["*.py"]
