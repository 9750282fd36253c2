"""The public API for plugin authors (docs/flows.md).

A plugin is a Python module the spec lists under ``plugins:``; its flows are async functions
decorated with :func:`flow`::

    from plantstage.api import FlowContext, flow

    @flow("receive-goods", description="A goods receipt becomes visible in stock",
          signals={"receipts": "goods receipts the app booked"})
    async def receive_goods(ctx: FlowContext) -> None:
        body = ctx.expect(await ctx.http.post(f"/t/{ctx.tenant.code}/receipts",
                                              json={"ref": ctx.ref}), 201)
        ctx.count("receipts")

Everything here is stable; everything else in ``plantstage`` is internal.
"""

from __future__ import annotations

from plantstage.workload.context import (
    FlowContext,
    FlowDatabase,
    FlowDef,
    FlowError,
    HttpClient,
    HttpResponse,
    Tenant,
    TwinHandle,
    flow,
)
from plantstage.workload.once import run_flow_once
from plantstage.workload.resources import RunResources

__all__ = ["FlowContext", "FlowDatabase", "FlowDef", "FlowError", "HttpClient", "HttpResponse",
           "RunResources", "Tenant", "TwinHandle", "flow", "run_flow_once"]
