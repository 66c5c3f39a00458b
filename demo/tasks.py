"""The embedded demo's live feed (scheduled only when TENURE_DEMO_FEED is on)."""

from __future__ import annotations

from celery import shared_task

from demo.workflows import demo_feed_one


@shared_task(name="demo.feed", ignore_result=True)
def demo_feed() -> int:
    """One new item per demo workflow."""
    return len(demo_feed_one())
