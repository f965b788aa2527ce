"""Third-party-style SE / CBAM / ECA implementations, written for the verify tests from SPEC.md's facts.

Each module imports one framework; the tests import them through ``verify``'s
``package.module:Factory`` targets, so a missing framework skips only its own tests.
"""
