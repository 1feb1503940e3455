"""Validation and repair of model output: every malformed case is repaired safely or rejected with a kind."""
from __future__ import annotations

import pytest

from pinlanding.vocab.parsing import OutputError, canonical_key, canonical_value, parse_model_output


def pairs(text: str) -> set[tuple[str, str]]:
    return {(a.key, a.value) for a in parse_model_output(text).attributes}


def test_flat_object_is_normalized() -> None:
    got = pairs('{"Colour": ["Navy", "WHITE"], "Product Type": "T-Shirt", "Sleeve Length": "Short Sleeves"}')
    assert got == {("color", "navy blue"), ("color", "white"), ("category", "t-shirt"), ("sleeve", "short sleeves")}


def test_list_form_keeps_confidence_and_clamps_it() -> None:
    parsed = parse_model_output('{"attributes": [{"key": "material", "value": "Cotton", "confidence": 3},'
                                ' {"key": "gender", "value": "Ladies", "confidence": "high"}]}', default_confidence=0.4)
    got = {(a.key, a.value): a.confidence for a in parsed.attributes}
    assert got == {("material", "cotton"): 1.0, ("gender", "women"): 0.4}


@pytest.mark.parametrize("text, note", [
    ('Sure! Here you go:\n```json\n{"color": "red"}\n```\nAnything else?', "json extracted"),
    ('{"color": "red", "pattern": ["striped",],}', "trailing commas"),
    ("{'color': 'red'}", "python literal"),
    ('The attributes are {"color": "red"} as requested.', "json extracted"),
])
def test_safe_repairs(text: str, note: str) -> None:
    parsed = parse_model_output(text)
    assert ("color", "red") in {(a.key, a.value) for a in parsed.attributes}
    assert any(note in n for n in parsed.notes)


@pytest.mark.parametrize("text, kind", [
    ("", "empty"), ("   ", "empty"), (None, "empty"),
    ("I think it is a red shirt", "invalid_json"),
    ('{"color": "red"', "invalid_json"),
    ('["red", "shirt"]', "wrong_type"),
    ('"red"', "wrong_type"),
    ('{"color": null, "pattern": ""}', "no_attributes"),
    ('{"attributes": [{"value": "red"}]}', "wrong_type"),
    ('{"color": "' + "x" * 30_000 + '"}', "too_long"),
])
def test_unusable_output_raises_with_kind(text, kind: str) -> None:
    with pytest.raises(OutputError) as err:
        parse_model_output(text)
    assert err.value.kind == kind


def test_wrong_value_types_are_repaired_or_dropped() -> None:
    parsed = parse_model_output('{"season": 2012, "color": {"r": 1}, "fit": true, "pattern": [1.0, "solid", ["x"]]}')
    assert {(a.key, a.value) for a in parsed.attributes} == {("season", "2012"), ("pattern", "1"), ("pattern", "solid")}
    assert any("nested" in n for n in parsed.notes)


def test_out_of_schema_keys_kept_when_they_look_like_attributes() -> None:
    parsed = parse_model_output('{"heel height": "high", "!!!": "x", "a very long key name that goes on and on": "y"}')
    assert {(a.key, a.value) for a in parsed.attributes} == {("heel_height", "high")}
    assert sum("dropped key" in n for n in parsed.notes) == 2


def test_hostile_values_are_cleaned() -> None:
    parsed = parse_model_output('{"color": "<script>alert(1)</script>Red 🔥🔥", "style": "boho-chic ✨",'
                                ' "brand": "Levi&#39;s", "shape": "' + "long " * 20 + '"}')
    got = {a.key: a.value for a in parsed.attributes}
    assert "<" not in got["color"] and "🔥" not in got["color"] and got["color"].endswith("red")
    assert got["style"] == "boho-chic" and got["brand"] == "levi's"
    assert "shape" not in got  # over-long values are dropped


def test_values_per_key_are_capped_and_deduplicated() -> None:
    values = ", ".join(f'"c{i}"' for i in range(20))
    parsed = parse_model_output('{"color": [' + values + ', "c1", "C1"]}')
    assert len(parsed.attributes) == 8


def test_normalizers() -> None:
    assert canonical_key("  Fabric ") == "material" and canonical_key(12) is None
    assert canonical_key("Sleeve Length") == "sleeve"  # synonyms, unlike key_form's "sleeve_length"
    assert canonical_key("<b>Size/Fit</b>") == "size_fit"
    assert canonical_value("color", "Gray") == "grey" and canonical_value("gender", "MEN'S") == "men"
    assert canonical_value("x", "  ") is None and canonical_value("x", False) is None
