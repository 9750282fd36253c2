"""Built-in tenant archetypes: each a mix of flows, rates, batch sizes and arrival shapes.

The rates are per tenant and sized for the sample plant on SQLite (a rehearsal phase of a few
seconds on a laptop); a spec scales them, or replaces an archetype, under
``workload.archetypes``.
"""

from __future__ import annotations

from plantstage.spec.workload import Archetype, Workload

BUILTIN: dict[str, Archetype] = {
    "high-volume-discrete": Archetype.model_validate({
        "description": "Many finished goods, large EDI order batches, steady confirmations.",
        "flows": [
            {"flow": "sales-order-import", "rate": 2, "orders": 20, "lines": 10},
            {"flow": "production-confirmation", "rate": 4, "redeliver": 0.25},
            {"flow": "work-order-to-stock", "rate": 1},
            {"flow": "inventory-adjustment", "rate": 2},
        ],
    }),
    "process": Archetype.model_validate({
        "description": "Batch production: few large orders, bursty material movements, an "
                       "MRP-style planning run.",
        "flows": [
            {"flow": "production-confirmation", "rate": 3, "redeliver": 0.1},
            {"flow": "inventory-adjustment", "rate": 3, "arrival": {"model": "poisson"}},
            {"flow": "mrp-run", "rate": 0.5, "items": 10},
            {"flow": "sales-order-import", "rate": 0.5, "orders": 5, "lines": 3},
        ],
    }),
    "multi-plant": Archetype.model_validate({
        "description": "Several plants: inter-plant receipts and a shift pattern of work.",
        "flows": [
            {"flow": "sales-order-import", "rate": 1, "orders": 10, "lines": 5},
            {"flow": "purchase-to-receipt", "rate": 1, "lines": 3},
            {"flow": "work-order-to-stock", "rate": 1},
            {"flow": "inventory-adjustment", "rate": 2, "arrival": {
                "model": "shift", "pattern": [{"seconds": 2, "factor": 0.5},
                                              {"seconds": 1, "factor": 2}]}},
        ],
    }),
    "heavily-integrated": Archetype.model_validate({
        "description": "Many systems talking at once: redeliveries, retry storms, supplier "
                       "receipts.",
        "flows": [
            {"flow": "production-confirmation", "rate": 3, "redeliver": 0.5},
            {"flow": "retry-storm", "rate": 1, "burst": 5},
            {"flow": "purchase-to-receipt", "rate": 2, "lines": 2},
            {"flow": "sales-order-import", "rate": 1, "orders": 10, "lines": 5,
             "arrival": {"model": "poisson"}},
        ],
    }),
}


def archetypes(workload: Workload) -> dict[str, Archetype]:
    """The archetypes a workload knows: the built-in ones, overridden or extended by the spec."""
    return {**BUILTIN, **workload.archetypes}
