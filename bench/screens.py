"""Screenshots of the main screens, for docs/screens/ (before/after a change).

Run against a seeded console (``manage.py seed_demo``) that serves on ``--base``,
with the same environment (DATABASE_URL ...) so the script can find the rows to show:

    .venv/bin/python bench/screens.py --base http://127.0.0.1:8000 --prefix after

Each shot is the viewport (not the full page), so every PNG stays small.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = os.environ.get("TENURE_DEMO_PASSWORD", "tenure-demo")


def _targets() -> list[tuple[str, str, str, int]]:
    """(name, user, path, viewport width) for each screen."""
    import django

    django.setup()
    from agents.models import Escalation, Execution, Proposal

    escalation = (
        Escalation.objects.filter(workflow__slug="refunds", reason="policy_denied", status="open")
        .exclude(packet__injection_flags=[])  # the one that tried a refund after injected text
        .order_by("-id")
        .first()
        or Escalation.objects.filter(workflow__slug="refunds").order_by("-id").first()
    )
    card = Proposal.objects.filter(workflow__slug="refunds", tool="create_refund", status="pending")
    card = card.order_by("id").first()
    execution = Execution.objects.order_by("-id").first()
    decided = Proposal.objects.filter(workflow__slug="refunds", tool="create_refund")
    decided = decided.exclude(status="pending").order_by("-id").first()
    # The story of an executed action when there is one (its proposal's page, from the top).
    explain = f"/explain/proposal/{execution.proposal_id if execution else decided.pk}/"
    targets = [
        ("escalation", "rita", f"/w/refunds/escalations/{escalation.pk}/", 1280),
        ("evidence-pack", "mona", "/w/refunds/evidence-pack/", 1280),
        ("audit-log", "ada", "/audit/", 1280),
        ("explain", "mona", explain, 1280),
        ("refund-card", "rita", f"/w/refunds/queue/{card.pk}/", 1280),
        ("queue-390", "rita", "/w/refunds/queue/", 390),
        ("escalation-390", "rita", f"/w/refunds/escalations/{escalation.pk}/", 390),
        ("dashboard-390", "mona", "/w/refunds/dashboard/", 390),
        ("home", "mona", "/", 1280),
    ]
    return targets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--prefix", default="after")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screens"))
    parser.add_argument("--only", default="", help="comma-separated screen names")
    options = parser.parse_args()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    only = {name for name in options.only.split(",") if name}

    from playwright.sync_api import sync_playwright

    targets = [t for t in _targets() if not only or t[0] in only]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        contexts = {}
        for name, user, path, width in targets:
            key = (user, width)
            if key not in contexts:
                height = 844 if width <= 400 else 900
                # Desktop shots at 0.75 scale: the same layout, a smaller PNG.
                scale = 1 if width <= 400 else 0.75
                context = browser.new_context(
                    viewport={"width": width, "height": height}, device_scale_factor=scale
                )
                page = context.new_page()
                page.goto(f"{options.base}/login/")
                page.fill("#id_username", user)
                page.fill("#id_password", PASSWORD)
                with page.expect_navigation():
                    page.keyboard.press("Enter")
                contexts[key] = page
            page = contexts[key]
            page.goto(f"{options.base}{path}")
            page.wait_for_load_state("networkidle")
            target = out / f"{options.prefix}-{name}.png"
            page.screenshot(path=str(target), caret="initial")
            width_px = page.evaluate("document.documentElement.scrollWidth")
            height_px = page.evaluate("document.documentElement.scrollHeight")
            print(
                f"{target.name}: page {width_px}x{height_px}px, {target.stat().st_size // 1024} KB"
            )
        browser.close()


if __name__ == "__main__":
    main()
