"""Test-only hooks, installed by the test settings (never by production ones)."""
