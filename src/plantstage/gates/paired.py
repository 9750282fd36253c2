"""The paired comparison: is the new version slower than the old one, judged so noise cannot decide.

In the paired phase both versions take the same traffic in alternating blocks at the same time,
so whatever else the machine does (a CI neighbour compiling, a burst of I/O) slows both alike.
What remains to judge is one question per flow: *by what factor is the new version slower?*

* **Effect**: the Hodges–Lehmann shift of ``log(latency)`` between the new and the old samples —
  the median of every pairwise difference ``log(new_j) − log(old_i)``. Back on the ratio scale
  it is the median ratio new/old (1.08 = 8 % slower). It is robust: a few stalled requests on
  either side move it little, where they would move a mean or a p95 a lot.
* **Interval**: the distribution-free confidence interval of that shift (Moses; Hollander &
  Wolfe): the k-th smallest and k-th largest pairwise difference, with k taken from the null
  distribution of the Mann–Whitney statistic. It needs no assumption about the latency
  distribution's shape (latencies are skewed and heavy-tailed).
* **Decision** against ``max_ratio`` (and ``floor_ms``: an absolute increase below it never
  fails, so a 3 ms request becoming 7 ms is not a regression): *pass* when the whole interval
  is under the threshold, *fail* when the whole interval is over it, *inconclusive* when it
  straddles the threshold or there are too few samples — never a verdict made of noise, never
  one made of no data.

Hand-written rather than SciPy (~40 MB for a rank test; see :mod:`plantstage.gates.stats`): the
exact Mann–Whitney distribution is the q-binomial coefficient, a dozen lines of integer
arithmetic, and above a few thousand pairs the normal approximation is as good. Everything here
is deterministic: the p95 comparison's bootstrap draws from a seeded generator.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from statistics import NormalDist

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
#: Fewest successful samples per version a median comparison decides on, and a p95 one.
MIN_SAMPLES = {"p50": 8, "p95": 20}
#: Fewest blocks per version: one block of each is no pairing at all (its noise is its own).
MIN_BLOCKS = 2
#: Above this many pairs the exact Mann–Whitney distribution gives way to the normal one.
_EXACT_PAIRS = 2500
#: Samples per version kept for the pairwise differences (evenly spaced order statistics of
#: larger samples: fewer points widen the interval, so thinning can only make a decision less
#: likely, never a wrong one more likely).
_MAX_PER_SIDE = 1500
_BOOTSTRAP = 2000


@dataclass(frozen=True)
class PairedResult:
    """One paired comparison: effect (new/old ratio), its interval, and the decision."""

    decision: str  # pass | fail | inconclusive
    stat: str  # p50 (median shift) | p95
    ratio: float | None  # the estimated ratio new/old
    low: float | None  # the interval of the ratio
    high: float | None
    limit: float  # the ratio the interval is judged against (max_ratio, or the floor's)
    max_ratio: float
    floor_ms: float
    confidence: float
    n_old: int
    n_new: int
    old_ms: float | None  # the old version's median (or p95) in ms
    new_ms: float | None
    needed: int | None = None  # samples per version that would likely resolve it
    why: str = ""  # for an inconclusive result without an interval

    @property
    def interval(self) -> list[float] | None:
        return None if self.low is None or self.high is None else [self.low, self.high]

    @property
    def text(self) -> str:
        """The decision in one line, e.g. ``new/old median ratio 1.08 [0.91, 1.27], threshold
        ≤ 2.0 → pass``."""
        what = "median ratio" if self.stat == "p50" else "p95 ratio"
        thr = f"threshold ≤ {_t(self.max_ratio)}"
        if self.limit > self.max_ratio:
            thr += f" (≤ {_r(self.limit)} with the {self.floor_ms:g} ms floor)"
        if self.ratio is None or self.low is None or self.high is None:
            return f"new/old {what}: {self.why}, {thr} → inconclusive"
        head = (f"new/old {what} {_r(self.ratio)} [{_r(self.low)}, {_r(self.high)}], {thr} "
                f"→ {self.decision}")
        if self.decision == INCONCLUSIVE:
            head += ": the interval straddles the threshold"
            if self.needed:
                head += (f"; about {self.needed} samples per version would resolve it "
                         f"(have {min(self.n_old, self.n_new)})")
            else:
                head += "; the effect sits close to it, so more samples would settle it slowly"
        return head

    def as_dict(self) -> dict:
        return {**asdict(self), "interval": self.interval, "text": self.text}


def _t(x: float) -> str:
    """A threshold as written: 2.0, 1.5, 1.25."""
    return f"{x:.1f}" if float(x).is_integer() else f"{x:g}"


def _r(x: float) -> str:
    if math.isinf(x):
        return "∞"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


# -- the Mann–Whitney distribution and the Hodges–Lehmann interval ---------------------------

@lru_cache(maxsize=256)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings of two samples give U = 0, 1, …, m·n.

    They are the coefficients of the q-binomial ∏ᵢ₌₁..ₘ (1 − q^(n+i)) / (1 − q^i): multiply by
    the numerator term (from the top down), divide by the denominator one (from the bottom up).
    Each partial product is a polynomial of degree ≤ m·n, so truncating there is exact.
    """
    top = m * n
    c = [0] * (top + 1)
    c[0] = 1
    for i in range(1, m + 1):
        step = n + i
        for k in range(top, step - 1, -1):
            c[k] -= c[k - step]
        for k in range(i, top + 1):
            c[k] += c[k - i]
    return tuple(c)


def rank_of_bound(m: int, n: int, confidence: float) -> int:
    """k such that [D₍ₖ₎, D₍ₘₙ₊₁₋ₖ₎] of the sorted pairwise differences covers the true shift
    with at least ``confidence`` (0 when no interval can: too few samples)."""
    return rank_of_bound_strata([(m, n)], confidence)


def rank_of_bound_strata(sizes: Sequence[tuple[int, int]], confidence: float) -> int:
    """The same for strata (van Elteren): differences are taken within each stratum only, and
    the statistic is the sum of the strata's independent Mann–Whitney U — its exact
    distribution is the convolution of theirs."""
    alpha2 = (1 - confidence) / 2
    sizes = [(m, n) for m, n in sizes if m and n]
    pairs = sum(m * n for m, n in sizes)
    if not pairs:
        return 0
    if pairs <= _EXACT_PAIRS:
        counts: list[int] = [1]
        total = 1
        for m, n in sizes:
            c = _u_counts(m, n)
            total *= math.comb(m + n, m)
            conv = [0] * (len(counts) + len(c) - 1)
            for i, a in enumerate(counts):
                if a:
                    for j, b in enumerate(c):
                        conv[i + j] += a * b
            counts = conv
        k, cum = 0, 0
        # P(U ≤ k − 1) ≤ α/2 for the largest such k
        while k < len(counts) and (cum + counts[k]) / total <= alpha2:
            cum += counts[k]
            k += 1
        return k
    sd = math.sqrt(sum(m * n * (m + n + 1) for m, n in sizes) / 12)
    z = NormalDist().inv_cdf(1 - alpha2)
    return max(0, math.floor(pairs / 2 + 0.5 - z * sd))


def _thin(xs: list[float]) -> list[float]:
    if len(xs) <= _MAX_PER_SIDE:
        return xs
    s = sorted(xs)
    step = (len(s) - 1) / (_MAX_PER_SIDE - 1)
    return [s[round(i * step)] for i in range(_MAX_PER_SIDE)]


def hodges_lehmann(x: Sequence[float], y: Sequence[float],
                   confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """Shift of ``y`` against ``x``: the median of all ``y_j − x_i`` and its interval (None,
    None when the samples are too small for one at this confidence)."""
    return hodges_lehmann_strata([(x, y)], confidence)


def hodges_lehmann_strata(groups: Sequence[tuple[Sequence[float], Sequence[float]]],
                          confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """The common shift over strata (e.g. one per tenant, whose imports differ in size): the
    median of the differences *within* each stratum, and its interval. Comparing like with like
    removes the spread between strata from the interval; one stratum is the plain estimator."""
    thinned = [(_thin(list(x)), _thin(list(y))) for x, y in groups]
    d = sorted(b - a for xs, ys in thinned for a in xs for b in ys)
    if not d:
        raise ValueError("no stratum holds samples of both versions")
    mid = len(d) // 2
    est = d[mid] if len(d) % 2 else (d[mid - 1] + d[mid]) / 2
    k = rank_of_bound_strata([(len(xs), len(ys)) for xs, ys in thinned], confidence)
    if k < 1:
        return est, None, None
    return est, d[k - 1], d[len(d) - k]


def _quantile(s: list[float], q: float) -> float:
    """Linear interpolation between order statistics of the sorted ``s``."""
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _p95_ratio(old: list[float], new: list[float], confidence: float,
               seed: str) -> tuple[float, float, float]:
    """The p95 ratio new/old and a percentile-bootstrap interval (seeded: same data, same
    interval)."""
    rng = random.Random(seed)
    est = _quantile(sorted(new), 0.95) / _quantile(sorted(old), 0.95)
    ratios = []
    for _ in range(_BOOTSTRAP):
        a = sorted(rng.choices(old, k=len(old)))
        b = sorted(rng.choices(new, k=len(new)))
        ratios.append(_quantile(b, 0.95) / max(_quantile(a, 0.95), 1e-3))
    ratios.sort()
    alpha2 = (1 - confidence) / 2
    return est, _quantile(ratios, alpha2), _quantile(ratios, 1 - alpha2)


# -- the decision -----------------------------------------------------------------------------

def compare(old: Sequence[float], new: Sequence[float], *, max_ratio: float,
            floor_ms: float = 0.0, stat: str = "p50", confidence: float = 0.95,
            min_samples: int | None = None, blocks: tuple[int, int] | None = None,
            seed: str = "plantstage",
            strata: tuple[Sequence[Hashable], Sequence[Hashable]] | None = None) -> PairedResult:
    """Judge the new version's latencies (ms) against the old one's from the paired phase.

    ``blocks`` is how many blocks of each version the samples came from (old, new), when known;
    ``seed`` seeds the p95 bootstrap (the median comparison draws nothing); ``strata`` gives
    each sample's stratum (old's, new's — e.g. the tenant that drove it), and the median shift
    then compares samples within a stratum only (samples of a stratum the other version never
    met are left out).
    """
    if stat not in MIN_SAMPLES:
        raise ValueError(f"stat is p50 or p95, not {stat!r}")
    if strata is None:
        strata = ([None] * len(old), [None] * len(new))
    keep_old = [(s, float(v)) for s, v in zip(strata[0], old, strict=True)
                if v is not None and math.isfinite(v) and v >= 0]
    keep_new = [(s, float(v)) for s, v in zip(strata[1], new, strict=True)
                if v is not None and math.isfinite(v) and v >= 0]
    both = {s for s, _ in keep_old} & {s for s, _ in keep_new}
    if stat == "p50":  # strata only matter to the median shift
        keep_old = [(s, v) for s, v in keep_old if s in both]
        keep_new = [(s, v) for s, v in keep_new if s in both]
    olds = [v for _, v in keep_old]
    news = [v for _, v in keep_new]
    need = max(MIN_SAMPLES[stat], min_samples or 0)
    q = 0.5 if stat == "p50" else 0.95
    old_ms = _quantile(sorted(olds), q) if olds else None
    new_ms = _quantile(sorted(news), q) if news else None
    # The floor as a ratio: new ≤ old + floor_ms is never a failure.
    limit = max_ratio
    if floor_ms > 0 and old_ms:
        limit = max(max_ratio, 1 + floor_ms / old_ms)

    def res(decision, ratio=None, low=None, high=None, needed=None, why=""):
        return PairedResult(decision, stat, ratio, low, high, limit, max_ratio, floor_ms,
                            confidence, len(olds), len(news), old_ms, new_ms, needed, why)

    if len(olds) < need or len(news) < need:
        return res(INCONCLUSIVE, needed=need,
                   why=f"too few samples (old {len(olds)}, new {len(news)}; at least {need} "
                   "per version needed)")
    if blocks is not None and min(blocks) < MIN_BLOCKS:
        return res(INCONCLUSIVE, why=f"samples from too few blocks (old {blocks[0]}, new "
                   f"{blocks[1]}; at least {MIN_BLOCKS} of each needed to pair them)")
    if stat == "p50":
        # Logs of latencies: a shift there is a ratio. A zero latency (a timer's resolution)
        # is taken as 1 µs.
        groups = [([math.log(max(v, 1e-3)) for t, v in keep_old if t == s],
                   [math.log(max(v, 1e-3)) for t, v in keep_new if t == s])
                  for s in sorted(both, key=repr)]
        est, lo, hi = hodges_lehmann_strata(groups, confidence)
        if lo is None or hi is None:
            return res(INCONCLUSIVE, math.exp(est), needed=need,
                       why="too few samples for an interval at this confidence")
        ratio, low, high = math.exp(est), math.exp(lo), math.exp(hi)
    else:
        if not old_ms:
            return res(INCONCLUSIVE, why="the old version's p95 is 0 ms")
        ratio, low, high = _p95_ratio(olds, news, confidence, seed)
    if high <= limit:
        return res(PASS, ratio, low, high)
    if low > limit:
        return res(FAIL, ratio, low, high)
    return res(INCONCLUSIVE, ratio, low, high,
               needed=_needed(min(len(olds), len(news)), ratio, low, high, limit))


def _needed(n: int, ratio: float, low: float, high: float, limit: float) -> int | None:
    """Samples per version that would likely put the interval on one side of the limit, if
    the effect stays where it is: the interval's half-width shrinks as 1/√n."""
    est, lim = math.log(ratio), math.log(limit)
    gap = abs(lim - est)
    half = (math.log(high) - est) if est < lim else (est - math.log(low))
    if gap < 1e-9 or half <= 0:
        return None  # the effect sits on the threshold: no sample size settles it
    need = math.ceil(n * (half / gap) ** 2)
    if need > 20 * n:
        return None  # near the threshold: a number that large would only mislead
    return need if need > n else n + 1
