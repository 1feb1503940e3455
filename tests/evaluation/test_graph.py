"""The attribute graph against labels: precision by source, colour mix."""
from __future__ import annotations

import pyarrow as pa

from pinlanding.evaluation.graph import by_source, colour_mix, judged_rows
from pinlanding.evaluation.labels import Labels


def _labels() -> Labels:
    labels = Labels()
    for pid, colour, kind in (("1", "Black", "Tshirts"), ("2", "Black", "Shirts"), ("3", "Blue", "Tshirts"),
                              ("4", "Black", "Tshirts")):
        labels.add(pid, "colour", colour)
        labels.add(pid, "category", kind)
    return labels


def _graph(rows: list[tuple[str, str, str, float, str]]) -> pa.Table:
    return pa.table({name: list(col) for name, col in zip(("product_id", "key", "value", "confidence", "source"),
                                                            zip(*rows))})


def test_rows_are_judged_and_counted_by_source() -> None:
    graph = _graph([("1", "color", "black", 0.9, "extraction"), ("2", "color", "grey", 0.6, "encoder"),
                    ("3", "color", "blue", 0.95, "extraction+encoder"), ("4", "category", "t-shirt", 0.8, "encoder"),
                    ("4", "material", "cotton", 0.9, "extraction")])  # no material label: not judged
    rows = judged_rows(_labels(), graph)
    assert list(rows["correct"]) == [1, 0, 1, 1, -1]
    out = by_source(rows)
    assert out["encoder"] == {"rows": 2, "share": 0.4, "precision": 0.5}
    assert out["with_encoder"] == {"rows": 3, "share": 0.6, "precision": 0.6667}
    assert out["extraction"]["precision"] == 1.0 and out["attributes_per_product"] == 1.25
    assert out["extraction_per_product"] == 0.75  # extraction and extraction+encoder rows
    assert by_source(rows, min_confidence=0.7)["rows"] == 4


def test_colour_mix_finds_a_colour_flooding_the_graph() -> None:
    graph = _graph([(p, "color", "blue", 0.9, "encoder") for p in "123"] + [("4", "color", "black", 0.9, "extraction")])
    mix = colour_mix(_labels(), judged_rows(_labels(), graph))
    assert mix["worst"]["value"] == "blue" and mix["worst"]["ratio"] == 3.0 and mix["over_1_5x"] == ["blue"]
    shares = {r["value"]: r for r in mix["table"]}
    assert shares["black"]["label_share"] == 0.75 and shares["black"]["graph_share"] == 0.25


def test_a_shade_the_labels_do_not_name_counts_as_its_base_colour() -> None:
    graph = _graph([("1", "color", "sky blue", 0.9, "extraction"), ("3", "color", "blue", 0.9, "extraction"),
                    ("2", "color", "skin", 0.9, "extraction"), ("4", "color", "black", 0.9, "extraction")])
    mix = colour_mix(_labels(), judged_rows(_labels(), graph))
    shares = {r["value"]: r for r in mix["table"]}
    assert shares["blue"]["graph_share"] == 0.5 and "sky blue" not in shares
    assert mix["not_in_labels"] == {"skin": 0.25} and shares["skin"]["ratio"] is None
