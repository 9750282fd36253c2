"""The worker pool: forked processes that inherit the plan (masking is Python work; in
threads it would share one interpreter lock)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import sqlalchemy as sa

from plantstage import engines
from plantstage.data._mask import (
    RefreshError,
)
from plantstage.data._result import Progress
from plantstage.errors import PlantstageError

#: Tables loaded at once on a server target (the benchmark machine has two cores).
WORKERS = 2


#: What a forked worker inherits (set in the parent just before the fork).
_FORK_STATE: dict[str, Any] = {}


def can_fork() -> bool:
    return WORKERS > 1 and "fork" in multiprocessing.get_all_start_methods()


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _child_init() -> None:
    st = _FORK_STATE
    st.pop("inherited", None)  # closed before the fork; never used here
    if "source_url" in st:
        st["src"] = engines.connect_production(st["source_url"])
    st["dst"] = st["target"].engine()
    # Close the sessions when the worker exits (it leaves through os._exit, which skips
    # atexit; multiprocessing runs its own finalizers first).
    for name in ("src", "dst"):
        if name in st:
            multiprocessing.util.Finalize(None, st[name].dispose, exitpriority=10)


def _child_run(fn: Callable[[dict, Any], Any], arg: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(_FORK_STATE, arg)
    except PlantstageError as exc:  # errors travel as data: exceptions with keywords
        return "error", (exc.message, exc.where, exc.hint)  # do not unpickle reliably
    except BaseException as exc:  # noqa: BLE001 - reported in the parent
        return "error", (f"{type(exc).__name__}: {exc}", None, None)


def forked(state: dict[str, Any], fn: Callable[[dict, Any], Any], args: list[Any],
            progress: Progress | None = None,
            started: Callable[[], None] | None = None) -> Iterator[Any]:
    """``fn(state, arg)`` for every arg in forked worker processes; results as they come.

    ``started`` runs in the parent once the workers exist (a thread started before the fork
    could hold a connection the children would inherit)."""
    if not args:
        if started is not None:
            started()
        return
    ctx = multiprocessing.get_context("fork")
    for e in state.get("inherited", []):
        # No pooled connection may cross the fork: a child finishing it would hang up the
        # parent's session on the shared socket. The parent reconnects when it needs to.
        e.dispose()
    queue_ = ctx.Queue() if progress is not None else None
    _FORK_STATE.clear()
    _FORK_STATE.update(state, queue=queue_)
    drain = None
    try:
        with ProcessPoolExecutor(max_workers=min(WORKERS, len(args)), mp_context=ctx,
                                 initializer=_child_init) as pool:
            futures = [pool.submit(_child_run, fn, a) for a in args]
            if queue_ is not None:
                def pump() -> None:
                    while (item := queue_.get()) is not None:
                        progress(*item)

                drain = threading.Thread(target=pump, name="refresh-progress", daemon=True)
                drain.start()
            if started is not None:
                started()
            try:
                for f in as_completed(futures):
                    status, value = f.result()
                    if status == "error":
                        msg, where, hint = value
                        raise RefreshError(msg, where=where, hint=hint)
                    yield value
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        if queue_ is not None:
            queue_.put(None)
            if drain is not None:
                drain.join(timeout=5)
            queue_.close()
        _FORK_STATE.clear()
