"""Fuzz the review app and the feed API over a finished run: hostile request classes, then random requests.

Every request of a hostile class must get a 4xx (or, where the class says so, a harmless 2xx/3xx); no
request may get a 5xx. Prints per app: requests, classes, 2xx/3xx, 4xx, 5xx and requests answered other
than expected. In process (Starlette's TestClient), so server exceptions count as 5xx instead of raising.

Usage: python benchmarks/bench_fuzz_web.py [--run runs/final] [--random 2000]
"""
from __future__ import annotations

import argparse
import hashlib
import random
import secrets
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi.testclient import TestClient

from pinlanding.collections.layout import RunLayout
from pinlanding.feeds.api import create_app as feed_api
from pinlanding.feeds.config import ServeConfig
from pinlanding.vocab.review import create_app as review_app

DEFAULT_RUN = Path(__file__).resolve().parents[1] / "runs" / "final"
HOSTILE = ['<script>alert(1)</script>', "' OR 1=1 --", "../../../../etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
           "\x00", "%00", "A" * 10_000, "\u202e\u200b", "{{7*7}}", "${jndi:ldap://x}", "🧨" * 50,
           "%ED%B3%BF%FF"]  # the last: invalid UTF-8 once the server decodes it
Case = tuple[str, str, dict[str, Any], str]  # (method, url, httpx kwargs, expected: "4xx" | "ok" | "any")


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in sentence encoder (hashed words), so /search answers without a model."""
    out = np.zeros((len(texts), 64), np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def feed_classes(slug: str) -> dict[str, list[Case]]:
    return {
        "unknown paths": [("GET", p, {}, "4xx") for p in ("/nope", "/topics/x/y/z", "/admin", "/.env", "/docs")],
        "traversal in slug": [("GET", f"/topics/{s}", {}, "4xx") for s in ("..%2f..%2fetc%2fpasswd", "%2e%2e", "..", "%00")],
        "hostile slugs": [("GET", f"/topics/{quote(s, safe='')}/feed", {}, "4xx") for s in HOSTILE],
        "limit out of range": [("GET", f"/topics/{slug}/feed", {"params": {"limit": v}}, "4xx")
                               for v in (-1, 0, 10**9, "abc", "1.5", "", "1e3")],
        "offset out of range": [("GET", "/topics", {"params": {"offset": v}}, "4xx") for v in (-1, 10**12, "x", "0x10")],
        "search without text": [("GET", "/search", {"params": p}, "4xx") for p in ({}, {"q": ""}, {"q": "   "})],
        "search text too long": [("GET", "/search", {"params": {"q": "dress " * 2000}}, "4xx")],
        "search k out of range": [("GET", "/search", {"params": {"q": "red", "k": v}}, "4xx") for v in (0, -3, 10**6, "k")],
        "hostile search text": [("GET", "/search", {"params": {"q": s}}, "any") for s in HOSTILE if len(s) < 500],
        "hostile title filter": [("GET", "/topics", {"params": {"q": s}}, "any") for s in HOSTILE if len(s) < 500],
        "write methods": [(m, p, {}, "4xx") for m in ("POST", "PUT", "DELETE", "PATCH")
                          for p in ("/topics", f"/topics/{slug}", "/search")],
        "repeated and odd parameters": [("GET", f"/topics/{slug}/feed?limit=1&limit=x", {}, "4xx"),
                                        ("GET", "/topics?offset[]=1", {}, "any"),
                                        ("GET", "/topics?" + "&".join(f"p{i}=1" for i in range(500)), {}, "any")],
        "odd headers": [("GET", "/topics", {"headers": h}, "any") for h in
                        ({"accept": "text/html"}, {"accept": "*/*;q=x"}, {"content-type": "application/json"},
                         {"x-forwarded-for": "1.1.1.1, <script>"}, {"range": "bytes=0-1"})],
    }


def review_classes(token: str, csrf: str) -> dict[str, list[Case]]:
    form = {"content-type": "application/x-www-form-urlencoded"}
    auth = {"authorization": f"Bearer {token}"}
    post = lambda body, extra=None: {"content": body, "headers": {**form, **auth, **(extra or {})}}  # noqa: E731
    return {
        "no token": [("GET", p, {}, "4xx") for p in ("/", "/values?key=color", "/topics", "/image?pid=1")],
        "wrong tokens": [("GET", "/", {"headers": {"authorization": f"Bearer {t}"}}, "4xx")
                         for t in ("x", token[:-1], token + "x", "", " " + token, token.upper())]
                        + [("GET", f"/?token={t}", {}, "4xx") for t in ("x", token[:-1], "%00")],
        "token in a cookie of another name": [("GET", "/", {"cookies": {"token": token}}, "4xx")],
        "no CSRF token": [("POST", "/reviewer", post(b"who=a"), "4xx"), ("POST", "/decide", post(b"action=approve"), "4xx")],
        "wrong CSRF token": [("POST", "/decide", post(f"action=approve&csrf_token={c}".encode()), "4xx")
                             for c in ("0" * 64, csrf[:-1], "", "%00")],
        "body over the limit (declared)": [("POST", "/decide", post(b"a=b", {"content-length": "300000000"}), "4xx")],
        "body over the limit (sent)": [("POST", "/decide", post(b"a=" + b"x" * 100_000), "4xx")],
        "not a form": [("POST", "/decide", {"content": b'{"action": "approve"}',
                                            "headers": {**auth, "content-type": "application/json"}}, "4xx"),
                       ("POST", "/decide", {"content": b"x", "headers": {**auth, "content-type": "multipart/form-data"}},
                        "4xx")],
        "malformed form": [("POST", "/decide", post(b), "4xx") for b in
                           (b"\xff\xfe=\x00", b"&&&=&=", "&".join(f"f{i}=1" for i in range(50)).encode())],
        "no reviewer name": [("POST", "/decide", post(f"action=approve&key=color&value=red&csrf_token={csrf}".encode()),
                              "4xx")],
        "unknown action or topic": [("POST", "/decide", post(f"action={a}&topic_id=nope&csrf_token={csrf}".encode(),
                                                              {"cookie": "pl_reviewer=fuzz"}), "4xx")
                                    for a in ("delete", "drop_table", "", "accept_topic", "%3Cscript%3E")],
        "image traversal": [("GET", f"/image?pid={p}", {"headers": auth}, "4xx")
                            for p in ("../../../../etc/passwd", "/etc/passwd", "%2e%2e%2f", "..\\..\\x", "%00")],
        "open redirect in back": [("POST", "/decide", post(
            f"action=approve&key=color&value=fuzz&csrf_token={csrf}&back={b}".encode(), {"cookie": "pl_reviewer=fuzz"}),
            "ok") for b in ("http://evil.example", "//evil.example", "/\\evil.example", "https:evil", "javascript:alert(1)")],
        "hostile values page keys": [("GET", "/values", {"params": {"key": s}, "headers": auth}, "4xx")
                                     for s in HOSTILE],
        "topics paging": [("GET", "/topics", {"params": p, "headers": auth}, "any")
                          for p in ({"offset": -5}, {"offset": 10**9}, {"offset": "x"}, {"status": "<b>"})],
        "write methods": [(m, "/", {"headers": auth}, "4xx") for m in ("PUT", "DELETE", "PATCH")],
        "unknown paths": [("GET", p, {"headers": auth}, "4xx") for p in ("/admin", "/static/../../etc/passwd",
                                                                          "/static/%2e%2e/%2e%2e/x", "/.git/config")],
    }


def random_cases(rng: random.Random, n: int, paths: list[str], params: list[str]) -> list[Case]:
    """Random paths, parameters and values drawn from the API's own vocabulary and hostile strings."""
    values = HOSTILE + ["1", "-1", "0", "20", "red", "", "99999999999999999999"]
    cases: list[Case] = []
    for _ in range(n):
        path = rng.choice(paths).replace("{slug}", quote(rng.choice(values + ["dresses"]), safe=""))
        query = {rng.choice(params): rng.choice(values) for _ in range(rng.randint(0, 3))}
        cases.append((rng.choice(["GET"] * 8 + ["POST", "HEAD"]), path, {"params": query}, "any"))
    return cases


def fuzz(name: str, client: TestClient, classes: dict[str, list[Case]], extra: list[Case]) -> None:
    statuses: Counter = Counter()
    unexpected: list[str] = []
    start = time.perf_counter()
    for cls, cases in [*classes.items(), ("random", extra)]:
        for method, url, kwargs, expect in cases:
            try:
                code = client.request(method, url, follow_redirects=False, **kwargs).status_code
            except Exception as exc:  # a client-side refusal (e.g. a URL httpx cannot send) is not a server answer
                statuses["not sent"] += 1
                unexpected.append(f"{cls}: {type(exc).__name__}")
                continue
            band = f"{code // 100}xx"
            statuses[band] += 1
            if band == "5xx" or (expect == "4xx" and band != "4xx") or (expect == "ok" and band not in ("2xx", "3xx")):
                unexpected.append(f"{cls}: {method} {url[:60]!r} -> {code}")
    total = sum(statuses.values())
    print(f"{name}: {total} requests, {len(classes)} hostile classes + {len(extra)} random; "
          f"2xx/3xx {statuses['2xx'] + statuses['3xx']}, 4xx {statuses['4xx']}, 5xx {statuses['5xx']}, "
          f"not sent {statuses['not sent']}; unexpected {len(unexpected)}; {time.perf_counter() - start:.1f} s")
    for line in unexpected[:20]:
        print("   ", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="a finished run folder (read only)")
    parser.add_argument("--random", type=int, default=2000, help="random requests per app")
    args = parser.parse_args()
    layout, rng = RunLayout(args.run), random.Random(0)

    api = feed_api(layout, ServeConfig(), encoder=bag_of_words)
    with TestClient(api, raise_server_exceptions=False) as client:
        while client.get("/health").json()["search"] == "warming":
            time.sleep(0.5)
        slug = client.get("/topics", params={"limit": 1}).json()["items"][0]["slug"]
        fuzz("feed API", client, feed_classes(slug), random_cases(
            rng, args.random, ["/health", "/topics", "/topics/{slug}", "/topics/{slug}/feed", "/search", "/{slug}"],
            ["q", "k", "limit", "offset", "slug", "x"]))

    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        app = review_app(layout, token=token, decisions_file=Path(tmp) / "decisions.jsonl")
        with TestClient(app, raise_server_exceptions=False) as client:
            page = client.get("/", headers={"authorization": f"Bearer {token}"}).text
            csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            client.headers["authorization"] = ""  # each class sets its own credentials
            authed = TestClient(app, raise_server_exceptions=False, headers={"authorization": f"Bearer {token}"})
            fuzz("review app", client, review_classes(token, csrf), [])
            fuzz("review app (random, with the token)", authed, {}, random_cases(
                rng, args.random, ["/", "/values", "/topics", "/image", "/reviewer", "/decide", "/static/{slug}"],
                ["key", "status", "offset", "pid", "token"]))


if __name__ == "__main__":
    main()
