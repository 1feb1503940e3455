"""Feed versions for the API: the run id (a digest of the published feeds), recorded snapshots, feed diffs.

The run id is the first 16 hex digits of the SHA-256 of the published feeds' canonical JSON (ids, slugs,
titles, attributes, ranked product ids and scores, aliases): the same feeds give the same id whatever
folder or machine published them, and any change to a feed gives a new one. ``pinlanding serve`` records
a small snapshot of every version it serves in ``serve.versions_dir`` (``<run>/feeds/versions`` unless set;
point several run folders at one folder to diff across them); ``/changes?since=RUN`` diffs a recorded
version against the one being served: collections added, removed, and changed (which fields, and how
many products entered or left the feed).
"""
from __future__ import annotations

import gzip
import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Iterable

from pinlanding.collections.artifacts import AnyPath, as_path, atomic_path, list_files
from pinlanding.collections.layout import RunLayout

SNAPSHOT_VERSION = 1


def run_id(feeds: Iterable[dict[str, Any]]) -> str:
    """Digest of the published feeds' content (see the module docstring)."""
    h = hashlib.sha256()
    for f in sorted(feeds, key=lambda f: f["topic_id"]):
        head = [f["topic_id"], f["slug"], f.get("title"), f.get("query"),
                sorted([a["key"], a["value"]] for a in f.get("attributes") or []), f.get("judge_score"),
                sorted(f.get("aliases") or [])]
        h.update(json.dumps(head, sort_keys=True).encode())
        h.update("\x1e".join(f"{p['product_id']}\x1f{p['score']!r}" for p in f.get("products") or []).encode())
        h.update(b"\x1d")
    return h.hexdigest()[:16]


def published_at(layout: RunLayout) -> datetime:
    """When the feeds were published: the feeds stage's finish time in the manifest, else the file's mtime."""
    try:
        manifest = json.loads(as_path(layout.manifest).read_text(encoding="utf-8"))
        return datetime.fromisoformat(manifest["stages"]["feeds"]["finished_at"]).astimezone(timezone.utc)
    except (OSError, KeyError, TypeError, ValueError):
        pass
    try:
        return datetime.fromtimestamp(as_path(layout.feeds).stat().st_mtime, timezone.utc)
    except (OSError, AttributeError):
        return datetime(1970, 1, 1, tzinfo=timezone.utc)


def snapshot(feeds: Iterable[dict[str, Any]], rid: str, published: datetime) -> dict[str, Any]:
    """What a later run is compared against: per collection its slug, title, attributes and ranked ids."""
    return {"version": SNAPSHOT_VERSION, "run_id": rid, "published_at": published.isoformat(),
            "collections": {f["topic_id"]: {"slug": f["slug"], "title": f.get("title"),
                                            "attributes": sorted([a["key"], a["value"]] for a in f.get("attributes") or []),
                                            "aliases": sorted(f.get("aliases") or []),
                                            "products": [p["product_id"] for p in f.get("products") or []]}
                            for f in feeds}}


def versions_folder(layout: RunLayout, configured: str | None) -> AnyPath:
    if configured:
        path = as_path(configured)
        return path if path.is_absolute() or "://" in str(configured) else layout.root / configured
    return layout.dir("feeds") / "versions"


def record(folder: AnyPath, snap: dict[str, Any]) -> bool:
    """Write ``snap`` as ``<run_id>.json.gz`` unless that version is already recorded; True when written."""
    path = as_path(folder) / f"{snap['run_id']}.json.gz"
    if path.exists():
        return False
    data = gzip.compress(json.dumps(snap, sort_keys=True, separators=(",", ":")).encode(), mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return True


def load(folder: AnyPath, skip: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every recorded snapshot, by run id, but those in ``skip`` (unreadable files are skipped)."""
    out = {}
    try:
        files = list_files(folder, "*.json.gz")
    except (OSError, FileNotFoundError):
        return out
    for path in files:
        if skip and as_path(path).name.removesuffix(".json.gz") in skip:
            continue
        try:
            snap = json.loads(gzip.decompress(as_path(path).read_bytes()))
            out[snap["run_id"]] = snap
        except (OSError, ValueError, KeyError):
            continue
    return out


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Collections added, removed and changed from snapshot ``old`` to ``new`` (by topic id)."""
    a, b = old["collections"], new["collections"]
    added = [{"topic_id": t, "slug": b[t]["slug"], "title": b[t]["title"]} for t in sorted(set(b) - set(a))]
    removed = [{"topic_id": t, "slug": a[t]["slug"], "title": a[t]["title"]} for t in sorted(set(a) - set(b))]
    changed = []
    for t in sorted(set(a) & set(b)):
        x, y = a[t], b[t]
        fields = [k for k in ("slug", "title", "attributes", "aliases") if x[k] != y[k]]
        entered = len(set(y["products"]) - set(x["products"]))
        left = len(set(x["products"]) - set(y["products"]))
        if x["products"] != y["products"]:
            fields.append("products")
        if fields:
            entry = {"topic_id": t, "slug": y["slug"], "title": y["title"], "fields": fields,
                     "products_added": entered, "products_removed": left, "size": len(y["products"])}
            if "slug" in fields:
                entry["previous_slug"] = x["slug"]
            changed.append(entry)
    return {"since": old["run_id"], "since_published_at": old["published_at"], "run_id": new["run_id"],
            "published_at": new["published_at"], "added": added, "removed": removed, "changed": changed,
            "unchanged": len(set(a) & set(b)) - len(changed)}


def redirects(current: dict[str, Any], history: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Old slug -> current slug, for collections (same topic id) whose slug changed since a recorded version."""
    now = current["collections"]
    live = {c["slug"] for c in now.values()}
    out: dict[str, str] = {}
    for snap in sorted(history, key=lambda s: s["published_at"]):
        for t, c in snap["collections"].items():
            if t in now and c["slug"] != now[t]["slug"] and c["slug"] not in live:
                out[c["slug"]] = now[t]["slug"]
    return out
