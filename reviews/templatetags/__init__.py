"""Template filters of the review screens."""
