"""Vocabulary versions: ``vocabulary/versions/vNNNN.json`` (one per distinct vocabulary) and ``diff.json``."""
from __future__ import annotations

from typing import Any

from pinlanding.collections.artifacts import AnyPath, json_digest, list_files, read_json, write_json


def _vocab_index(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["key"], r["value"]): r for r in rows}


def diff_vocabularies(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, Any]:
    """Values added/removed, and per-value changes of status, variants and product count."""
    a, b = _vocab_index(old), _vocab_index(new)
    brief = lambda r: {"key": r["key"], "value": r["value"], "product_count": r["product_count"]}  # noqa: E731
    changed = []
    for k in sorted(a.keys() & b.keys()):
        ra, rb = a[k], b[k]
        delta = {f: [ra[f], rb[f]] for f in ("status", "product_count") if ra[f] != rb[f]}
        if set(ra["variants"]) != set(rb["variants"]):
            delta["variants_added"] = sorted(set(rb["variants"]) - set(ra["variants"]))
            delta["variants_removed"] = sorted(set(ra["variants"]) - set(rb["variants"]))
        if delta:
            changed.append({"key": k[0], "value": k[1], **delta})
    removed = [brief(a[k]) for k in sorted(a.keys() - b.keys())]
    added = [brief(b[k]) for k in sorted(b.keys() - a.keys())]
    # a removed value whose spelling now lives in an added value's variants was renamed or merged
    renamed = []
    for r in removed:
        for k in sorted(b.keys() - a.keys()):
            if k[0] == r["key"] and r["value"] in b[k]["variants"]:
                renamed.append({"key": r["key"], "from": r["value"], "to": k[1]})
    return {"added": added, "removed": removed, "renamed": renamed, "changed": changed,
            "summary": {"added": len(added), "removed": len(removed), "renamed": len(renamed), "changed": len(changed)}}


def write_version(folder: AnyPath, rows: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Store ``rows`` as the next ``versions/vNNNN.json`` unless identical to the latest; write ``diff.json``."""
    versions = folder / "versions"
    existing = list_files(versions, "v[0-9][0-9][0-9][0-9].json")
    digest = json_digest(rows)
    latest = read_json(existing[-1]) if existing else None
    if latest is not None and latest.get("digest") == digest:
        name = existing[-1].stem
        diff = read_json(folder / "diff.json", default=None)
        if diff is None:
            prev = read_json(existing[-2])["vocabulary"] if len(existing) > 1 else []
            diff = {"from": existing[-2].stem if len(existing) > 1 else None, "to": name,
                    **diff_vocabularies(prev, rows)}
            write_json(folder / "diff.json", diff)
        return name, diff
    name = f"v{len(existing) + 1:04d}"
    write_json(versions / f"{name}.json", {"version": name, "digest": digest, **meta, "vocabulary": rows})
    diff = {"from": existing[-1].stem if existing else None, "to": name,
            **diff_vocabularies(latest["vocabulary"] if latest else [], rows)}
    write_json(folder / "diff.json", diff)
    return name, diff
