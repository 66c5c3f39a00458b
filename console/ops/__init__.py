"""The ops overview and the kill switch pages."""
