"""Plugins: Python modules that bring an app's flows to plantstage (docs/flows.md).

A spec names its plugins at the top level (``plugins: [myapp_plugin]``); each is imported with the
spec's folder first on ``sys.path``, so ``myapp_plugin.py`` beside ``plantstage.yaml`` is found
before an installed package of that name. Installed packages may also register through the
entry-point group ``plantstage.plugins`` (the entry point names a module, or a function returning
flows). Every function decorated with :func:`plantstage.api.flow` at a plugin module's top level is
registered under its name. (The implementation lives in :mod:`plantstage.workload.registry`, so
the workload engine can load a spec's plugins without importing this module back.)
"""

from __future__ import annotations

from plantstage.workload.registry import (
    ENTRY_POINT_GROUP,
    Registry,
    flows_of,
    import_plugin,
    load_plugins,
)

__all__ = ["ENTRY_POINT_GROUP", "Registry", "flows_of", "import_plugin", "load_plugins"]
