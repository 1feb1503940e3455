"""Landing pages as a search engine's and an auditor's tools see them, on a real run (on demand, not a test).

The run's site is rebuilt in a temporary folder with ``site.base_url`` set to a local HTTP server (so canonical
links, Open Graph, the sitemap and robots.txt are absolute, as when published), served on 127.0.0.1, and:

- Lighthouse 12.2.3 (SEO and accessibility; its default mobile emulation, and ``--preset desktop`` too) audits
  the home page, the biggest hub, that hub's biggest collection and the collection's page 2;
- the Nu HTML Checker (``vnu.jar`` from the ``vnu-jar`` npm package, on Java 17) checks every page (or
  ``--pages N`` of them), CSS included; findings are grouped by message;
- with ``--screenshots DIR``: the home page and a collection at 1280 px, and the collection at 390 px (headless
  Chromium), as JPEGs for the README.

    npm i -E --prefix TOOLS lighthouse@12.2.3 vnu-jar
    python benchmarks/bench_pages.py [--run runs/myntra] [--tools TOOLS] [--pages N] [--json FILE]
                                     [--screenshots docs/img]

Needs node (20), java (17) and Debian's chromium; without them it says what is missing and exits 0.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pinlanding.collections.config import load_config
from pinlanding.collections.layout import RunLayout
from pinlanding.collections.pipeline import call_stage
from pinlanding.feeds.site import run_site

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102
        pass


def serve(folder: Path) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def pick_pages(site: Path) -> list[str]:
    """The home page, the biggest hub, its biggest collection and that collection's page 2 (when it has one)."""
    home = (site / "index.html").read_text(encoding="utf-8")
    hub = re.search(r'<h2 id="[^"]+"><a href="(h/[^"]+)"', home).group(1)
    first = re.search(r'<li class="tile"><a href="\.\./(c/[^"]+)"', (site / hub).read_text(encoding="utf-8")).group(1)
    pages = ["index.html", hub, first]
    second = first.replace(".html", "--2.html")
    if (site / second).exists():
        pages.append(second)
    return pages


def lighthouse(tools: Path, url: str, preset: str | None, work: Path) -> dict:
    out = work / f"lh-{abs(hash((url, preset)))}.json"
    cmd = ["node", str(tools / "node_modules/lighthouse/cli/index.js"), url, "--only-categories=seo,accessibility",
           "--output=json", f"--output-path={out}", "--quiet",
           "--chrome-flags=--headless=new --no-sandbox --disable-gpu"]
    if preset:
        cmd.append(f"--preset={preset}")
    subprocess.run(cmd, check=True, env=os.environ | {"CHROME_PATH": CHROMIUM}, timeout=300)
    report = json.loads(out.read_text())
    failing = []
    for category in report["categories"].values():
        for ref in category["auditRefs"]:
            audit = report["audits"][ref["id"]]
            if ref["weight"] > 0 and audit["score"] is not None and audit["score"] < 1:
                failing.append(f"{ref['id']}: {audit['title']}")
    return {"scores": {k: round(v["score"] * 100) for k, v in report["categories"].items()}, "failing": failing,
            "lighthouse": report["lighthouseVersion"]}


def nu_check(tools: Path, site: Path, limit: int | None) -> dict:
    pages = sorted(site.rglob("*.html"))
    if limit:
        step = max(1, len(pages) // limit)
        pages = pages[::step][:limit]
    files = [str(p) for p in pages] + [str(site / "static" / "style.css")]
    start = time.perf_counter()
    run = subprocess.run(["java", "-jar", str(tools / "node_modules/vnu-jar/build/dist/vnu.jar"), "--format", "json",
                          "--also-check-css", *files], capture_output=True, text=True, timeout=1800)
    messages = json.loads(run.stderr or run.stdout or '{"messages": []}')["messages"]
    grouped = Counter(f"{m['type']}{'/' + m['subType'] if m.get('subType') else ''}: {m['message']}"
                      for m in messages)
    version = subprocess.run(["java", "-jar", str(tools / "node_modules/vnu-jar/build/dist/vnu.jar"), "--version"],
                             capture_output=True, text=True).stdout.strip()
    return {"files": len(files), "seconds": round(time.perf_counter() - start, 1), "findings": dict(grouped),
            "vnu": version}


def screenshots(base: str, page: str, folder: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    shots = [("index.html", 1280, 1100, 1, "site-home.jpg"), (page, 1280, 1100, 1, "site-collection.jpg"),
             (page, 390, 844, 2, "site-mobile-390.jpg")]
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for path, width, height, scale, name in shots:
            tab = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=scale)
            tab.goto(base + path, wait_until="networkidle")
            tab.screenshot(path=str(folder / name), type="jpeg", quality=80)
            out.append(folder / name)
            tab.close()
        browser.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "myntra", help="run folder with feeds")
    parser.add_argument("--tools", type=Path, default=Path(os.environ.get("PINLANDING_WEB_TOOLS", "/work/tools16")),
                        help="npm prefix holding lighthouse@12.2.3 and vnu-jar")
    parser.add_argument("--pages", type=int, default=0, help="check only this many pages with vnu (0: all)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--screenshots", type=Path, help="write README screenshots into this folder")
    args = parser.parse_args()
    missing = [what for what, ok in (
        (f"{args.tools}/node_modules/lighthouse (npm i -E --prefix {args.tools} lighthouse@12.2.3 vnu-jar)",
         (args.tools / "node_modules/lighthouse/cli/index.js").exists()),
        (f"{args.tools}/node_modules/vnu-jar", (args.tools / "node_modules/vnu-jar/build/dist/vnu.jar").exists()),
        ("node", shutil.which("node")), ("java", shutil.which("java")), ("chromium", Path(CHROMIUM).exists()),
        (f"a run with feeds at {args.run}", (args.run / "feeds" / "feeds.parquet").exists())) if not ok]
    if missing:
        print("bench_pages: skipped, missing " + "; ".join(missing))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        work = Path(tmp)
        site = work / "site"
        site.mkdir()
        server, port = serve(site)
        base = f"http://127.0.0.1:{port}/"
        cfg_file = args.run / "config.yaml"
        cfg = load_config(cfg_file if cfg_file.exists() else None, [f"site.base_url={base}"])
        start = time.perf_counter()
        counts = call_stage(run_site, cfg, RunLayout(args.run), out=site)
        print(f"site rebuilt under {base} in {time.perf_counter() - start:.1f} s: {counts}")
        pages = pick_pages(site)
        results: dict = {"run": str(args.run), "pages": pages, "lighthouse": {}, "counts": counts}
        print("\nLighthouse (SEO, accessibility):")
        for page in pages:
            for preset in (None, "desktop"):
                r = lighthouse(args.tools, base + page, preset, work)
                results["lighthouse"][f"{page} ({preset or 'mobile'})"] = r
                print(f"  {page:45s} {preset or 'mobile':8s} SEO {r['scores']['seo']:3d}  accessibility "
                      f"{r['scores']['accessibility']:3d}  {'; '.join(r['failing']) or 'no failing audit'}")
        print("\nNu HTML Checker:")
        nu = nu_check(args.tools, site, args.pages or None)
        results["vnu"] = nu
        print(f"  vnu {nu['vnu']}: {nu['files']} files in {nu['seconds']} s, "
              f"{sum(nu['findings'].values())} findings")
        for message, n in sorted(nu["findings"].items(), key=lambda kv: -kv[1]):
            print(f"  {n:6d}  {message}")
        if args.screenshots:
            for shot in screenshots(base, pages[2], args.screenshots):
                print(f"screenshot: {shot}")
        server.shutdown()
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    low = [k for k, r in results["lighthouse"].items() if min(r["scores"].values()) < 95]
    if low:
        print(f"below 95: {low}")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
