"""The evidence pages: dashboards, the workflow page, explain, evidence pack, exports,
evals, promotion.
"""
