"""Topic ids come from the canonical attribute set, not its spelling."""
from __future__ import annotations

from pinlanding.vocab.topics import canonical_attribute, topic_id


def test_respelling_keeps_the_id():
    base = (("category", "t-shirt"), ("color", "navy blue"))
    for respelled in [(("category", "T-Shirts"), ("colour", "Navy-Blue")), (("category", "tshirt"), ("color", "navy  blue")),
                      (("Category", "t shirt"), ("base_colour", "NAVY BLUE")), tuple(reversed(base))]:
        assert topic_id(respelled) == topic_id(base), respelled
    assert len(topic_id(base)) == 16


def test_different_values_and_keys_keep_different_ids():
    assert topic_id((("category", "pants"),)) != topic_id((("category", "trousers"),))  # other words, other values
    assert topic_id((("category", "dress"), ("color", "red"))) != topic_id((("category", "dress"),))
    assert topic_id((("style", "red"),)) != topic_id((("color", "red"),))  # a key no family covers stays itself
    assert canonical_attribute("fabric", "Cotton-Blend") == ["material", "cottonblend"]
