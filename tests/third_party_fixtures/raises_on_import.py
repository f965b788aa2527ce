"""A target module that raises while it is imported: verify must report it, not crash."""

raise RuntimeError("this module cannot be imported (on purpose, for the verify tests)")
