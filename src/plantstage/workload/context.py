"""The flow context: what one iteration of a flow sees (documented in docs/flows.md).

The public names are re-exported by :mod:`plantstage.api`; plugin authors import from there.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from plantstage.workload.resources import RunResources

#: The attribute ``@flow`` sets on a function (a :class:`FlowDef`).
FLOW_ATTR = "__plantstage_flow__"


class FlowError(Exception):
    """Fail the iteration; ``kind`` groups errors in the signals (``http_422``, ``no_ack`` …).

    Counted as ``workload.<phase>.errors.<kind>``. ``detail`` is kept for one-shot runs (the
    smoke step shows it) and never becomes part of a signal name.
    """

    def __init__(self, kind: str, detail: str | None = None):
        super().__init__(kind if detail is None else f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Tenant:
    """The tenant an iteration runs for: its code, archetype and master data.

    ``data[NAME]`` is the list the spec's ``workload.tenant_data.NAME`` loaded for this tenant.
    """

    code: str
    archetype: str | None = None
    data: Mapping[str, list[Any]] = field(default_factory=dict)


FlowFunction = Callable[["FlowContext"], Awaitable[Any]]


@dataclass(frozen=True)
class FlowDef:
    """A registered flow: its name (used in signal names), function and declared signals."""

    name: str
    fn: FlowFunction
    description: str = ""
    #: counter/gauge name → what it means (listed by ``plantstage check``).
    signals: Mapping[str, str] = field(default_factory=dict)
    #: the module that defined it (for messages).
    module: str = ""


def flow(name: str, *, description: str = "",
         signals: Mapping[str, str] | None = None) -> Callable[[FlowFunction], FlowFunction]:
    """Register an ``async def f(ctx: FlowContext) -> None`` as the flow ``name``.

    ``signals`` documents the counters the flow records with :meth:`FlowContext.count` /
    :meth:`FlowContext.signal` (name → meaning); ``plantstage check`` lists them. The function
    is returned unchanged, so it can still be called (or named as ``module:function``).
    """
    from plantstage.spec.workload import FLOW_NAME

    if not FLOW_NAME.match(name):
        raise ValueError(f"flow name '{name}': letters, digits, '-' and '_' only (it becomes "
                         "part of signal names)")

    def register(fn: FlowFunction) -> FlowFunction:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@flow('{name}'): {fn.__qualname__} must be an async function")
        setattr(fn, FLOW_ATTR, FlowDef(name, fn, description or (inspect.getdoc(fn) or "")
                                       .split("\n\n")[0].replace("\n", " "),
                                       dict(signals or {}), fn.__module__))
        return fn

    return register


class StatsSink(Protocol):
    """Where an iteration's measurements go (the engine's per-lane statistics)."""

    extra: Counter
    gauges: dict[str, float]

    def record_step(self, name: str, seconds: float) -> None: ...

    def record_e2e(self, seconds: float) -> None: ...


class HttpResponse(Protocol):
    """What ``ctx.http`` requests return."""

    status_code: int
    content: bytes

    def json(self) -> Any: ...

    @property
    def text(self) -> str: ...


class HttpClient(Protocol):
    """``ctx.http``: a keep-alive HTTP/1.1 client on the version under test.

    Paths are relative to the app's base URL; absolute URLs (a twin's ``url``) work too.
    Keyword arguments: ``json=``, ``params=``, ``headers=``, ``content=``.
    """

    async def request(self, method: str, path: str, **kw: Any) -> HttpResponse: ...

    async def get(self, path: str, **kw: Any) -> HttpResponse: ...

    async def post(self, path: str, **kw: Any) -> HttpResponse: ...

    async def put(self, path: str, **kw: Any) -> HttpResponse: ...

    async def delete(self, path: str, **kw: Any) -> HttpResponse: ...


@dataclass
class LaneState:
    """What every iteration of one (tenant, flow) lane shares; built by the engine."""

    phase: str
    flow: str
    tenant: Tenant
    archetype: str
    params: Mapping[str, Any]
    timeout: float
    rng: random.Random
    http: Any
    resources: RunResources
    stats: StatsSink
    db: FlowDatabase = field(init=False)

    def __post_init__(self) -> None:
        self.db = FlowDatabase(self)


class FlowDatabase:
    """``ctx.db``: read-only queries on the app's staging database."""

    __slots__ = ("_lane",)

    def __init__(self, lane: LaneState):
        self._lane = lane

    @property
    def available(self) -> bool:
        """Whether this run has a database bound (``--database-url`` or the rehearsal's)."""
        return self._lane.resources.database_url is not None

    async def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read query (``:name`` bind parameters); FlowError('no_database') without
        a database. The connection is read-only: a flow observes, it never writes."""
        engine = self._lane.resources.engine()
        if engine is None:
            raise FlowError("no_database", "this run has no database bound")

        def run() -> list[tuple[Any, ...]]:
            import sqlalchemy as sa

            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(sql), params)]

        return await asyncio.to_thread(run)

    async def wait_until(self, sql: str, condition: Callable[[list[tuple[Any, ...]]], Any], *,
                         name: str = "db", timeout: float | None = None,
                         **params: Any) -> list[tuple[Any, ...]]:
        """Run ``sql`` until ``condition(rows)`` is truthy; return those rows.

        Recorded as step ``wait-<name>``; on timeout FlowError('timeout_<name>').
        """
        async def probe() -> list[tuple[Any, ...]] | None:
            rows = await self.query(sql, **params)
            return rows if condition(rows) else None

        return await _wait(self._lane, probe, name, timeout)


async def _wait(lane: LaneState, probe: Callable[[], Awaitable[Any]], name: str,
                timeout: float | None, interval: float = 0.02) -> Any:
    t0 = time.perf_counter()
    deadline = t0 + (lane.timeout if timeout is None else timeout)
    try:
        while True:
            value = await probe()
            if value:
                return value
            if time.perf_counter() >= deadline:
                raise FlowError(f"timeout_{name}")
            await asyncio.sleep(min(interval, max(0.0, deadline - time.perf_counter())))
            interval = min(interval * 2, 0.25)
    finally:
        lane.stats.record_step(f"wait-{name}", time.perf_counter() - t0)


class TwinHandle:
    """``ctx.twin(component)``: the running twin that plays ``component``.

    Attributes and methods are the twin's own (docs/twins.md: ``publish``, ``received``,
    ``counters`` …). A twin runs on its own event loop; its ``async`` methods are carried over to
    it, so a flow simply awaits them. ``url`` is the twin's primary endpoint.
    """

    __slots__ = ("_twin", "component")

    def __init__(self, component: str, twin: Any):
        self.component = component
        self._twin = twin

    @property
    def url(self) -> str:
        url = getattr(self._twin, "url", None)
        if isinstance(url, str) and url:
            return url
        eps = self._twin.endpoints() if hasattr(self._twin, "endpoints") else {}
        for proto in ("http", "opcua", "mqtt"):
            if proto in eps:
                return eps[proto].split(" ", 1)[0]
        raise FlowError(f"no_url_{self.component}", "the twin has no endpoint")

    @property
    def twin(self) -> Any:
        """The twin object itself."""
        return self._twin

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._twin, name)
        if not inspect.iscoroutinefunction(value):
            return value
        runtime = getattr(self._twin, "runtime", None)
        loop = getattr(runtime, "loop", None)
        if loop is None:
            return value

        @functools.wraps(value)
        async def on_twin_loop(*args: Any, **kwargs: Any) -> Any:
            if asyncio.get_running_loop() is loop:
                return await value(*args, **kwargs)
            if not loop.is_running():
                raise FlowError(f"twin_down_{self.component}", "the twin's loop is stopped")
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(value(*args, **kwargs), loop))

        return on_twin_loop

    def __repr__(self) -> str:
        return f"TwinHandle({self.component!r}, {type(self._twin).__name__})"


class FlowContext:
    """What one iteration of a flow gets: ``async def my_flow(ctx: FlowContext) -> None``.

    * ``ctx.http`` — HTTP client on the version under test (paths relative to its base URL);
    * ``ctx.tenant`` — :class:`Tenant` (``code``, ``archetype``, ``data[NAME]``);
    * ``ctx.params`` — the flow's ``params:`` from the spec; ``ctx.timeout`` its ``timeout``;
    * ``ctx.rng`` — a seeded ``random.Random`` (per lane: runs repeat);
    * ``ctx.ref`` — a string unique to this iteration (use it in external references);
    * ``ctx.phase`` — ``baseline``, ``candidate``, ``load`` or ``once``; ``ctx.flow`` the label;
    * ``ctx.step(name)``, ``ctx.wait_until(...)``, ``ctx.record_e2e(s)`` — timings;
    * ``ctx.count(name, n)``, ``ctx.signal(name, value)`` — the flow's own signals;
    * ``ctx.db`` — read-only queries on the staging database;
    * ``ctx.twin(component)`` — the running twin of an estate component;
    * ``ctx.publish(topic, payload)`` — MQTT publish on the run's broker;
    * ``ctx.expect(response, 200)`` — the parsed JSON of an expected answer, else FlowError.
    """

    __slots__ = ("_lane", "ref")

    def __init__(self, lane: LaneState, ref: str):
        self._lane = lane
        self.ref = ref

    # -- what the iteration is -------------------------------------------------------
    @property
    def http(self) -> HttpClient:
        return self._lane.http

    @property
    def tenant(self) -> Tenant:
        return self._lane.tenant

    @property
    def params(self) -> Mapping[str, Any]:
        return self._lane.params

    @property
    def rng(self) -> random.Random:
        return self._lane.rng

    @property
    def phase(self) -> str:
        return self._lane.phase

    @property
    def flow(self) -> str:
        return self._lane.flow

    @property
    def timeout(self) -> float:
        return self._lane.timeout

    @property
    def db(self) -> FlowDatabase:
        return self._lane.db

    # -- timings ----------------------------------------------------------------------
    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """Time the enclosed block: ``workload.<phase>.<flow>.step.<name>.{p50_ms,p95_ms,…}``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._lane.stats.record_step(name, time.perf_counter() - t0)

    async def wait_until(self, probe: Callable[[], Awaitable[Any]], *, name: str = "visible",
                         timeout: float | None = None, interval: float = 0.02) -> Any:
        """Poll ``await probe()`` until it returns something truthy; return that value.

        The interval doubles up to 0.25 s. Recorded as step ``wait-<name>``; after ``timeout``
        seconds (default: the flow's ``timeout``) FlowError('timeout_<name>'). A probe that
        raises fails the iteration at once (the app answered wrongly, not slowly).
        """
        return await _wait(self._lane, probe, name, timeout, interval)

    def record_e2e(self, seconds: float) -> None:
        """An asynchronous effect's end-to-end latency (event time → visible):
        ``workload.<phase>.<flow>.e2e_{p50_ms,p95_ms,p99_ms,max_ms}``."""
        self._lane.stats.record_e2e(max(0.0, seconds))

    # -- the flow's own signals -------------------------------------------------------
    def count(self, name: str, n: float = 1) -> None:
        """Add ``n`` to the counter ``name``: summed over the phase as
        ``workload.<phase>.<flow>.<name>`` and ``workload.<phase>.business.<name>``."""
        self._lane.stats.extra[name] += n

    def signal(self, name: str, value: float) -> None:
        """Record a level (a gauge): the phase keeps the highest value any iteration recorded,
        as ``workload.<phase>.<flow>.<name>``."""
        g = self._lane.stats.gauges
        v = float(value)
        if name not in g or v > g[name]:
            g[name] = v

    # -- HTTP helpers -----------------------------------------------------------------
    def expect(self, response: HttpResponse, status: int | Iterable[int] = (200, 201)) -> Any:
        """The parsed JSON body of ``response`` when its status is expected, else
        FlowError('http_<status>') (the first 200 characters of the body as detail)."""
        ok = (status,) if isinstance(status, int) else tuple(status)
        if response.status_code not in ok:
            body = response.content[:200].decode("utf-8", "replace")
            raise FlowError(f"http_{response.status_code}", body)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise FlowError("bad_json", response.content[:200].decode("utf-8", "replace")) \
                from None

    # -- twins and the broker ---------------------------------------------------------
    def twin(self, component: str) -> TwinHandle:
        """The running twin that plays estate component ``component``;
        FlowError('no_twin_<component>') when none runs (e.g. ``plantstage load``)."""
        twins = getattr(self._lane.resources.twin_set, "twins", None) or {}
        t = twins.get(component)
        if t is None:
            raise FlowError(f"no_twin_{component}")
        return TwinHandle(component, t)

    def has_twin(self, component: str) -> bool:
        """Whether a twin plays ``component`` in this run."""
        return component in (getattr(self._lane.resources.twin_set, "twins", None) or {})

    async def publish(self, topic: str, payload: Any, *, qos: int = 1) -> None:
        """Publish on the run's MQTT broker (a dict/list is sent as JSON);
        FlowError('no_mqtt_broker') when the run has none."""
        res = self._lane.resources
        if res.mqtt_url is None:
            raise FlowError("no_mqtt_broker")
        client = await res.mqtt()
        data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        await client.publish(topic, data, qos=qos)

    def __repr__(self) -> str:
        return (f"FlowContext(flow={self.flow!r}, tenant={self.tenant.code!r}, "
                f"phase={self.phase!r}, ref={self.ref!r})")


__all__ = ["FLOW_ATTR", "FlowContext", "FlowDatabase", "FlowDef", "FlowError", "FlowFunction",
           "HttpClient", "HttpResponse", "LaneState", "Tenant", "TwinHandle", "flow"]
