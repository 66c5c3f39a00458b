"""The demo workflows' tools, on sandbox tables standing in for the systems of record."""
