"""Per-message faults on one seeded timeline, and the log of every fault injected.

Each decision is derived from ``(seed, twin, link, message key, attempt)`` alone, so the same
seed gives the same faults to the same messages whatever order concurrent flows produce them
in. Time-window faults (outage, or any rule with ``start``/``duration``) are measured from when
the twins started, or with ``during`` from the start of a workload phase (the load steps call
:meth:`FaultLog.phase_started`); ``every`` repeats a window. Every injected fault is logged with
its time in the run and the phase it fell in.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from plantstage.spec.twins import FaultKind, FaultPlanSpec, FaultRule, LatencyDistribution


@dataclass
class Decision:
    """What happens to one delivery of one message on one link."""

    drop: bool = False
    copies: int = 1
    delay: float = 0.0  # seconds, latency + outage hold + backlog
    corrupt: bool = False
    reorder: bool = False
    outage: float = 0.0  # seconds left in an outage window (0 = link is up)

    @property
    def clean(self) -> bool:
        return not (self.drop or self.copies > 1 or self.delay or self.corrupt or self.reorder)


@dataclass
class FaultEvent:
    t: float  # seconds since the twins started
    at: float  # epoch seconds
    twin: str
    link: str
    kind: str
    key: str
    detail: str = ""
    phase: str = ""  # the workload phase running then ("" between phases)

    def as_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "at": self.at, "twin": self.twin, "link": self.link,
                "kind": self.kind, "key": self.key, "detail": self.detail, "phase": self.phase}


class FaultLog:
    """Thread-safe, append-only record of injected faults (shared by all twins of a run)."""

    def __init__(self, t0: float | None = None):
        self.t0 = t0 if t0 is not None else time.time()
        self._events: list[FaultEvent] = []
        self._lock = threading.Lock()
        #: The workload phase running now and when it started (epoch seconds), or None.
        self.phase: str | None = None
        self.phase_at: float | None = None
        #: Every phase the log was told about: {"phase", "start", "end"} (seconds since t0).
        self.phases: list[dict[str, Any]] = []

    def phase_started(self, name: str) -> None:
        """A workload phase starts now: ``during: <name>`` fault windows count from here."""
        now = time.time()
        with self._lock:
            self.phase, self.phase_at = name, now
            self.phases.append({"phase": name, "start": round(now - self.t0, 3), "end": None})

    def phase_ended(self) -> None:
        """The running phase's load stopped: its ``during`` windows close."""
        now = time.time()
        with self._lock:
            if self.phases and self.phases[-1]["end"] is None:
                self.phases[-1]["end"] = round(now - self.t0, 3)
            self.phase, self.phase_at = None, None

    def record(self, twin: str, link: str, kind: str, key: str, detail: str = "") -> None:
        now = time.time()
        with self._lock:
            self._events.append(FaultEvent(now - self.t0, now, twin, link, kind, key, detail,
                                           self.phase or ""))

    def events(self) -> list[FaultEvent]:
        with self._lock:
            return list(self._events)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for e in self.events():
            per = out.setdefault(e.twin, {})
            per[e.kind] = per.get(e.kind, 0) + 1
        return out


def _unit(*parts: object) -> random.Random:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


@dataclass
class FaultInjector:
    """Decides faults for one twin. ``clock`` returns seconds since the twins started."""

    twin: str
    plan: FaultPlanSpec
    log: FaultLog
    clock: Any = None
    _buckets: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.clock is None:
            self.clock = lambda: time.time() - self.log.t0

    def _left(self, r: FaultRule, now: float) -> float | None:
        """Seconds left in the rule's window at ``now`` (inf: no end), None when inactive."""
        t = now
        if r.during is not None:
            phase, at = self.log.phase, self.log.phase_at
            if phase is None or at is None or r.during not in ("all", phase):
                return None
            t = now - (at - self.log.t0)  # seconds since the phase started
        start = r.start or 0.0
        if t < start:
            return None
        if r.duration is None:
            return math.inf
        local = t - start
        if r.every is not None:
            local %= r.every
        return r.duration - local if local < r.duration else None

    def _rules(self, link: str, now: float) -> list[tuple[int, FaultRule, float]]:
        out = []
        for i, r in enumerate(self.plan.rules):
            if r.link not in (None, link):
                continue
            left = self._left(r, now)
            if left is not None:
                out.append((i, r, left))
        return out

    def outage_left(self, link: str) -> float:
        """Seconds until the link is reachable again (0 if it is up)."""
        now = self.clock()
        left = 0.0
        for _, r, rest in self._rules(link, now):
            if r.kind == FaultKind.outage:
                left = max(left, rest)
        return left

    def decide(self, link: str, key: str, attempt: int = 0, *, log: bool = True) -> Decision:
        """The faults for this delivery; logged when ``log`` (one event per fault)."""
        now = self.clock()
        d = Decision()
        events: list[tuple[str, str]] = []
        rules = self._rules(link, now)
        if not rules:
            return d
        # One hash per delivery gives every rule its own uniform draw (cheap at 10k msg/s);
        # only latency distributions need a seeded generator.
        draw = hashlib.blake2b(f"{self.plan.seed}\x1f{self.twin}\x1f{link}\x1f{key}\x1f"
                               f"{attempt}".encode(), digest_size=64).digest()
        for i, r, left in rules:
            if r.kind == FaultKind.outage:
                d.outage = max(d.outage, left)
                events.append(("outage", f"link down {left:.2f} s more"))
                continue
            if r.kind == FaultKind.slow_consumer:
                with self._lock:  # a token bucket: one message every 1/rate seconds
                    slot = max(now, self._buckets.get(i, 0.0))
                    self._buckets[i] = slot + 1.0 / (r.rate or 1.0)
                if slot - now > 0.0005:
                    d.delay += slot - now
                    events.append(("slow-consumer", f"backlog {slot - now:.3f} s"))
                continue
            j = (i % 8) * 8
            u = int.from_bytes(draw[j:j + 8], "big") / 2.0 ** 64
            if u >= r.p:
                continue
            if r.kind == FaultKind.latency:
                extra = _latency(r, _unit(self.plan.seed, self.twin, link, key, attempt, i))
                d.delay += extra
                events.append(("latency", f"{extra * 1000:.1f} ms"))
            elif r.kind == FaultKind.drop:
                d.drop = True
                events.append(("drop", ""))
            elif r.kind == FaultKind.duplicate:
                d.copies += 1
                events.append(("duplicate", "delivered twice"))
            elif r.kind == FaultKind.reorder:
                d.reorder = True
                events.append(("reorder", f"held behind up to {r.window - 1} later messages"))
            elif r.kind == FaultKind.corrupt:
                d.corrupt = True
                events.append(("corrupt", "payload damaged"))
        if log:
            for kind, detail in events:
                self.log.record(self.twin, link, kind, key, detail)
        return d


def _latency(r: FaultRule, rng: random.Random) -> float:
    ms = r.ms
    if r.distribution == LatencyDistribution.lognormal:
        ms = (r.ms or 1.0) * math.exp(rng.gauss(0.0, r.sigma))
    if r.jitter_ms:
        ms += rng.uniform(-r.jitter_ms, r.jitter_ms)
    return max(0.0, ms) / 1000.0


def corrupt_payload(payload: bytes, key: str, seed: int = 0) -> bytes:
    """Damage a payload deterministically: truncate it and flip one byte."""
    if not payload:
        return b"\xff"
    rng = _unit(seed, "corrupt", key)
    cut = max(1, int(len(payload) * rng.uniform(0.3, 0.8)))
    data = bytearray(payload[:cut])
    pos = rng.randrange(len(data))
    data[pos] ^= 0x5A
    return bytes(data)


__all__ = ["Decision", "FaultEvent", "FaultInjector", "FaultLog", "corrupt_payload"]
