"""Argument types and the one-line error of the command-line tools (report, vectors, verify, audit)."""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["Parser", "first_line", "seconds", "seed"]


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2), like every other error of the tools.

    argparse's own ``error`` prints the whole usage first (several lines); here the line says where to find it.
    Sub-command parsers made with ``add_subparsers`` are of this class too.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def seed(text: str) -> int:
    """An argparse type: a seed is an int in [0, 2**32).

    >>> seed("7"), seed("4294967295")
    (7, 4294967295)
    """
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2**32), got {v}")
    return v


def seconds(text: str) -> float:
    """An argparse type: a time limit is a number of seconds > 0.

    >>> seconds("2.5")
    2.5
    """
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"the time limit must be > 0 seconds, got {text!r}")
    return v


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 500 characters), or its type's name.

    >>> first_line(ValueError("bad\\nmore")), first_line(KeyError())
    ('bad', 'KeyError')
    """
    text = str(e).strip().splitlines()
    return text[0][:500] if text else type(e).__name__
