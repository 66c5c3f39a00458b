"""The bottom layer: workflows, grants, autonomy and config changes, the gate, the breaker,
the audit log, permissions.
"""
