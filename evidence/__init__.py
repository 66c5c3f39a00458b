"""The top of the stack: metrics and rollups, dashboards, explain, the evidence pack,
exports and the read API.
"""
