"""What humans did: claims, decisions, approvals, item outcomes, reports, imported history,
the queues.
"""
