"""Security checks of a rehearsal: RBAC probes and the permission diff, the secrets scan and
the audit trail. The rehearsal steps (``rehearsal/steps/rbac.py``, ``secrets.py``) call these;
everything app-specific comes from the spec (``rbac:``, ``secrets:``, ``audit:``)."""
