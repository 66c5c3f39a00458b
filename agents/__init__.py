"""The runtime and its records: work items, runs, steps, proposals, escalations,
executions, tools, policy.
"""
