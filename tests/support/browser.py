"""A real browser for HTML the project writes: Debian's ``chromium``, headless.

:func:`open_page` loads a local file once and returns what a test checks: the DOM after
the page ran (``--dump-dom``), a screenshot, and every request the page itself made, read
from Chromium's network log (``--log-net-log``). The browser makes requests of its own
(component updates, time, spelling dictionaries) whatever the flags; they are told apart
from the page's by the network isolation key, which names the top frame's site — for a
page opened from a file, ``file://``. tests/test_report.py checks that a page fetching an
image is caught by this, so the check can fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib import image

#: Where .ci/run installs it (``apt-get install -y chromium``).
CHROMIUM: Final = "chromium"
TIMEOUT_S: Final = 90


@dataclass(frozen=True)
class Opened:
    dom: str
    screenshot: Any  # an RGB(A) array of floats in [0, 1]
    requests: list[str]  # URLs the page asked for, beyond itself


def open_page(page: Path, work: Path, *, width: int = 1100, height: int = 1600) -> Opened:
    """Open ``page`` (a local file) headless at ``width``×``height``; ``work`` holds the
    browser's profile, screenshot and network log."""
    browser = shutil.which(CHROMIUM)
    assert browser, "Chromium is needed for this test: apt-get install -y chromium"
    work.mkdir(parents=True, exist_ok=True)
    shot, netlog = work / "screenshot.png", work / "netlog.json"
    url = page.resolve().as_uri()
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={work / 'profile'}",
            "--no-first-run",
            "--disable-background-networking",
            f"--window-size={width},{height}",
            f"--screenshot={shot}",
            f"--log-net-log={netlog}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    own = {url, url.split("#")[0]}
    requests = [u for u in page_requests(json.loads(netlog.read_text())) if u not in own]
    return Opened(done.stdout, image.imread(shot), requests)


def page_requests(netlog: dict[str, Any]) -> list[str]:
    """The URLs of the requests a page opened from a file started (not the browser's own)."""
    kinds = {number: name for name, number in netlog["constants"]["logEventTypes"].items()}
    return [
        params["url"]
        for event in netlog["events"]
        if kinds.get(event["type"]) == "URL_REQUEST_START_JOB"
        and (params := event.get("params", {}))
        .get("network_isolation_key", "")
        .startswith("file://")
    ]


def inked(screenshot: Any) -> float:
    """The share of the screenshot's pixels that are not white."""
    rgb = np.asarray(screenshot)[..., :3]
    return float((rgb.min(axis=-1) < 0.97).mean())


def has_colour(screenshot: Any, hex_colour: str, tolerance: float = 0.02) -> bool:
    """True when some pixel of the screenshot is ``#rrggbb`` (within ``tolerance``)."""
    want = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    rgb = np.asarray(screenshot)[..., :3]
    return bool((np.abs(rgb - want).max(axis=-1) <= tolerance).any())
