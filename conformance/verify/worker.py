"""The worker: verify runs the target in a separate process, with a time limit on every call into it.

A target is somebody else's code: it may call ``sys.exit``, crash the interpreter (a segfault,
``os.abort``), hang, or raise while it is imported. :func:`run_isolated` runs the whole check
in a child process; before each call into the target (constructor, forward, backward, first
call) the child tells the parent what it is calling, and the parent kills the child when
that call has not returned within ``timeout`` seconds (:data:`DEFAULT_TIMEOUT` unless told).
Whatever ends the child is a failed report with the reason, never an exit of the caller.
``sys.exit`` inside a call is caught where it happens (:func:`calling`) and is a failure of
that call.

How the target reaches the child: the child is forked, so it shares the parent's objects and
module instances need no pickling. Forking is safe for PyTorch (the child runs single-threaded,
as DataLoader workers do) and for any framework the parent has not started. JAX and TensorFlow
cannot run in a child forked after they started their thread pools: a process that has started
one (a test session, a notebook that ran a model) checks a JAX/Keras target in-process instead,
and the report says so (:func:`cannot_fork`). The command line starts no framework in the parent,
so there every target is isolated. (A spawned interpreter was tried: it re-imports the caller's
``__main__``, which breaks scripts without a main guard, and costs seconds per target.)
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["DEFAULT_TIMEOUT", "TargetDied", "calling", "cannot_fork", "notify", "run_isolated"]

DEFAULT_TIMEOUT = 120.0
"""Seconds one call into the target (its constructor, a forward, a forward with its backward) may take."""

_CONN: Any = None  # the pipe to the parent, in a worker

IN_PROCESS_LIMIT: Callable[[str], contextlib.AbstractContextManager[None]] | None = None
"""Outside a worker, what limits the time of each call :func:`calling` marks (None: nothing); the audit sets
it while it runs a network in a process that cannot fork (an alarm signal, :func:`conformance.audit.walk.alarm`)."""


class TargetDied(Exception):
    """The worker ended or was stopped while running the target; the message says why, ``during`` which call
    (None when no call into the target was running)."""

    def __init__(self, message: str, during: str | None = None):
        super().__init__(message)
        self.during = during


def notify(kind: str, payload: Any) -> bool:
    """In a worker, send the parent a message: ``("begin", (what, at_least))`` starts timing a call (as
    :func:`calling` does, for a call that cannot be wrapped in a ``with``: a hook's), ``("partial", obj)``
    hands ``run_isolated``'s ``on_partial`` a result so far. False (nothing sent) outside a worker."""
    if _CONN is None:
        return False
    _CONN.send((kind, payload))
    return True


@contextlib.contextmanager
def calling(what: str, at_least: float = 0.0) -> Iterator[None]:
    """Mark a call into the target: timed by the parent in a worker (``timeout``, or ``at_least`` seconds when
    longer: importing a module imports its framework too); ``sys.exit`` becomes a RuntimeError."""
    if _CONN is not None:
        _CONN.send(("begin", (what, at_least)))
    limit = IN_PROCESS_LIMIT if _CONN is None and IN_PROCESS_LIMIT is not None else None
    try:
        with limit(what) if limit is not None else contextlib.nullcontext():
            yield
    except SystemExit as e:
        raise RuntimeError(f"{what} called sys.exit({e.code!r})") from None
    except KeyboardInterrupt:
        raise RuntimeError(f"{what} raised KeyboardInterrupt") from None
    finally:
        if _CONN is not None:
            _CONN.send(("end", what))


def _child(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    global _CONN
    _CONN = conn
    faulthandler.disable()  # a crash of the target is reported by the parent, in one line
    if "torch" in sys.modules:  # forked from a process whose OpenMP pool does not exist here
        sys.modules["torch"].set_num_threads(1)
    try:
        result: tuple[str, Any] = ("result", fn(*args, **kwargs))
    except BaseException as e:
        result = ("raised", e)
    try:
        conn.send(result)
    except Exception as e:  # an unpicklable exception or report
        conn.send(("raised", RuntimeError(f"{type(e).__name__}: {e}")))
    conn.close()


def _started_threaded_framework() -> str | None:
    """The name of a framework this process has started that cannot survive a fork, if any."""
    if "tensorflow" in sys.modules:
        return "TensorFlow"
    jax_backends = getattr(sys.modules.get("jax._src.xla_bridge"), "_backends", None)
    if jax_backends:
        return "JAX"
    return None


def cannot_fork(framework: str) -> str | None:
    """The framework this process has started that a forked child running a ``framework`` target could
    not use (None when forking is safe)."""
    if os.name != "posix":
        return "a platform without fork"
    return None if framework == "torch" else _started_threaded_framework()


def _describe_end(code: int | None) -> str:
    if code is None:
        return "did not end"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def run_isolated(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    timeout: float,
    on_partial: Callable[[Any], None] | None = None,
) -> Any:
    """``fn(*args, **kwargs)`` in a worker process; its result, or its exception re-raised here.

    Raises :class:`TargetDied` when the worker ends without a result or a call into the target
    outlives ``timeout``. ``on_partial`` receives what the worker sends with ``notify("partial", ...)``
    (results so far, kept when the worker dies later).
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs), daemon=True)
    proc.start()
    child.close()
    current: str | None = None
    started, limit = 0.0, timeout
    try:
        while True:
            wait = 0.5 if current is None else max(0.0, min(0.5, started + limit - time.monotonic()))
            if parent.poll(wait):
                try:
                    kind, payload = parent.recv()
                except (EOFError, OSError):
                    break
                if kind == "begin":
                    (current, at_least), started = payload, time.monotonic()
                    limit = max(timeout, at_least)
                elif kind == "end":
                    current = None
                elif kind == "partial" and on_partial is not None:
                    on_partial(payload)
                elif kind == "result":
                    return payload
                elif kind == "raised":
                    if not isinstance(payload, Exception):  # sys.exit or an interrupt outside a marked call: the
                        # target's doing, never the caller's exit (a SystemExit here would end the caller with 0)
                        did = (
                            f"called sys.exit({payload.code!r})"
                            if isinstance(payload, SystemExit)
                            else f"raised {type(payload).__name__}"
                        )
                        raise TargetDied(f"{current or 'the target'} {did}", current)
                    raise payload
            elif current is not None and time.monotonic() - started > limit:
                proc.kill()
                proc.join(5)
                raise TargetDied(f"{current} did not return within {limit:g} s (the time limit per call)", current)
            elif not proc.is_alive() and not parent.poll(0):
                break
        proc.join(5)
        where = f" during {current}" if current else ""
        raise TargetDied(f"the worker process running it {_describe_end(proc.exitcode)}{where}", current)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        parent.close()
