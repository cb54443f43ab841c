"""Screenshot an html report in a real browser (headless Chromium), to LOOK at it (issue 12 item 4).

    python tools/report_screenshot.py gcos-report/html/report.html report.png
    python tools/report_screenshot.py gcos-report/html/report.html graph.png --graph-only

``--graph-only`` renders just the build-order graph (the report's inline SVG and its CSS) at its own size.
Chromium runs with no network (the report is self-contained; its CSP forbids fetching anything anyway) and
a throwaway profile. Install it with ``apt-get install -y chromium``. What to look for: one frame per plan,
boxes coloured by state, arrows only between direct dependencies, and no arrow passing behind a box (the
geometry itself is proven by tests/test_evidence_graph.py; this is for the eye).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str:
    """The first headless-capable Chromium on PATH; SystemExit with a plain sentence when there is none."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("No Chromium found on PATH; install it (apt-get install -y chromium) and run again.")


def graph_page(report: str) -> tuple[str, int, int]:
    """A page holding only the report's CSS and its graph, and the graph's width and height."""
    css = re.search(r"<style>(.*?)</style>", report, re.S)
    svg = re.search(r'<div class="graph">(.*?</svg>)', report, re.S)
    if css is None or svg is None:
        raise SystemExit("That file holds no gcos build-order graph; give the report.html gcos report wrote.")
    size = re.search(r'<svg [^>]*width="([\d.]+)" height="([\d.]+)"', svg.group(1))
    assert size is not None
    width, height = (int(float(v)) + 40 for v in size.groups())
    page = f'<!DOCTYPE html><html><head><meta charset="utf-8"><style>{css.group(1)}</style></head>'
    page += f'<body style="margin:0"><div class="graph">{svg.group(1)}</div></body></html>'
    return page, width, height


def screenshot(html: Path, png: Path, width: int, height: int) -> None:
    """Render `html` in headless Chromium at width x height CSS pixels into `png`."""
    with tempfile.TemporaryDirectory(prefix="gcos-shot-") as profile:
        command = [
            browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            html.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not png.is_file():
        raise SystemExit(f"Chromium could not screenshot {html} (exit {done.returncode}): {done.stderr.strip()[-400:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("report", type=Path, help="report.html written by gcos report --format html")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--graph-only", action="store_true", help="only the build-order graph, at its own size")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)
    if args.graph_only:
        page, width, height = graph_page(args.report.read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory(prefix="gcos-graph-") as folder:
            html = Path(folder) / "graph.html"
            html.write_text(page, encoding="utf-8")
            screenshot(html, args.png, width, height)
    else:
        screenshot(args.report, args.png, args.width, args.height)
    print(f"screenshot written to {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
