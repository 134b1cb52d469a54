"""Debian's Chromium driven headless by Playwright: one launch recipe for the browser test and
``benchmarks/bench_app.py``, so that the figure the benchmark prints and the page the test checks
come from the same browser settings."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # root in a container: Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # no network here: the background fetches would only wait for time-outs
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def launch(playwright):
    """A headless Chromium browser (``playwright.chromium``) with ``CHROMIUM_ARGS``."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True)
