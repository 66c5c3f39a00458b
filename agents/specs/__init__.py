"""Workflows as code: a declarative YAML spec per workflow, planned, applied under
change control and exported (``manage.py workflow plan|apply|export``)."""
