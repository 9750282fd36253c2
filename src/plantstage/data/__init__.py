"""Production → staging data refresh: subset, mask, load, verify.

The public API is :func:`refresh` (the verb), :func:`refresh_database` (one database, for the
rehearsal), :func:`refresh_state` (read a target's completion marker) and the result type.
"""

from plantstage.data._key import resolve_key
from plantstage.data._marker import refresh_state
from plantstage.data._mask import RefreshError
from plantstage.data._refresh import refresh_database
from plantstage.data._result import RefreshResult
from plantstage.data.verbs import refresh

__all__ = ["RefreshError", "RefreshResult", "refresh", "refresh_database", "refresh_state",
           "resolve_key"]
