"""Ground-truth labels of the Myntra layout: the ONLY code that reads the label fields.

Pipeline stages never import this module; ``pinlanding evaluate`` does. Each product's labels are
grouped into the attribute families of :mod:`pinlanding.evaluation.mapping` and canonicalised with
the same rules as the vocabulary, so that both meet in one space.
"""
from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinlanding.evaluation.mapping import accepts, canonical, family_of

# family -> top-level record fields that carry it
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "category": ("articleType", "subCategory", "masterCategory"),
    "colour": ("baseColour",),
    "season": ("season",),
    "occasion": ("usage",),
    "gender": ("gender",),
    "brand": ("brandName",),
}
# family -> keys inside the record's ``articleAttributes``
ARTICLE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "category": ("Type",),
    "material": ("Fabric", "Fabric 2", "Fabric 3", "Material"),
    "pattern": ("Pattern", "Print or Pattern Type"),
    "occasion": ("Occasion",),
    "fit": ("Fit",),
    "sleeve": ("Sleeve Length",),
    "neck": ("Neck", "Collar"),
    "length": ("Length",),
}
MISSING = {"", "na", "n/a", "none", "null", "other", "others", "nan", "-"}
LABELS_FILE = "styles.jsonl.gz"


@dataclass
class Labels:
    """Canonical label values per family and product, with the spellings they came from."""

    values: dict[str, dict[str, set[str]]] = field(default_factory=lambda: defaultdict(dict))  # family -> pid -> set
    spellings: dict[str, dict[str, Counter]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Counter)))
    skipped: Counter = field(default_factory=Counter)  # reason -> count of unusable records
    n_records: int = 0

    def universe(self, family: str) -> set[str]:
        """Every canonical label value seen in ``family``."""
        return set(self.spellings.get(family, {}))

    def add(self, product_id: str, family: str, raw: Any) -> None:
        if raw is None or not isinstance(raw, (str, int, float)) or str(raw).strip().lower() in MISSING:
            return
        value = canonical(family, str(raw))
        if not value:
            return
        self.values[family].setdefault(product_id, set()).add(value)
        self.spellings[family][value][str(raw).strip()] += 1

    def judge_row(self, product_id: str, key: str, value: str) -> bool | None:
        """Whether one graph row (product, key, value) agrees with the product's labels, by the same
        mapping the collection metrics use; None when no label of the product can judge that key."""
        family = family_of(key)
        truth = self.values.get(family, {}).get(product_id) if family else None
        if not truth:
            return None
        value = canonical(family, value)
        return any(accepts(family, value, label) for label in truth)


def labels_file(path: str | Path) -> Path:
    """The labels file: ``path`` itself, or ``styles.jsonl.gz`` inside a Myntra folder."""
    path = Path(path)
    if path.is_dir():
        path = path / LABELS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no labels at {path}; pass the Myntra folder or its {LABELS_FILE}")
    return path


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def parse_record(labels: Labels, record: dict[str, Any]) -> None:
    """Add one catalogue record's labels; records without an id are counted in ``skipped``."""
    pid = record.get("id")
    if pid is None or str(pid).strip() == "":
        labels.skipped["missing id"] += 1
        return
    pid = str(pid).strip()
    for family, names in RECORD_FIELDS.items():
        for name in names:
            labels.add(pid, family, record.get(name))
    attrs = record.get("articleAttributes")
    if isinstance(attrs, dict):
        for family, names in ARTICLE_ATTRIBUTES.items():
            for name in names:
                labels.add(pid, family, attrs.get(name))
    fibres = labels.values.get("material", {}).get(pid, set()) - {"blended"}
    if len(fibres) >= 2:  # labels naming two or more fibres describe a blend: a "blended" row is right there
        labels.values["material"][pid].add("blended")
    group, _, audience = str(record.get("ageGroup") or "").partition("-")
    if group.strip().lower() == "kids":  # "Kids-Girls": a girls' product even where gender says "Women"
        labels.add(pid, "gender", "kid")
        if audience.strip().lower() in ("boys", "girls"):
            labels.add(pid, "gender", audience)


def read_labels(path: str | Path) -> Labels:
    """Read every record's labels from a Myntra ``styles.jsonl[.gz]`` (product ids as strings)."""
    labels = Labels()
    with _open(labels_file(path)) as f:
        for line in f:
            if not line.strip():
                continue
            labels.n_records += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                labels.skipped["malformed JSON"] += 1
                continue
            if not isinstance(record, dict):
                labels.skipped["not an object"] += 1
                continue
            parse_record(labels, record)
    return labels


def read_fields(path: str | Path, fields: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Raw label ``fields`` per product id (e.g. ``articleType`` and ``baseColour`` for the visual search
    benchmark, which judges "same category" by one field, not the category family's three)."""
    out: dict[str, dict[str, str]] = {}
    with _open(labels_file(path)) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("id") is not None:
                out[str(record["id"]).strip()] = {k: str(record[k]) for k in fields if record.get(k) not in (None, "")}
    return out
