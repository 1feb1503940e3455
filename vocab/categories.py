"""Category values are product types: structural rules over a category value's words.

Whatever backend extracted it, a category value is judged against the run's own vocabulary and the
general word tables of :mod:`pinlanding.vocab.extractors.lexicon` (no list of any catalogue's values):

- ``synonym``: a surface variant of one type becomes that type ("Tee" -> "T-shirt", "Tank" -> "Tank Top").
- ``name``: a brand or retailer ("Only Macy's": ends in a possessive, or is a brand value of the run) is
  no type ("Levi's Jeans" is jeans of brand levi's, by the ``head`` rule).
- ``with``: in "X with Y" the product is X ("Churidar Kurta with Dupatta" -> "Churidar Kurta").
- ``fragment``: a phrase starting with a dangling modifier head ("Length Skirt" from "Knee Length Skirt")
  merges into the rest ("Skirt"), or is dropped.
- ``audience``: audience words ("Kidswear") belong to gender, never to category.
- ``head``: a compound whose head is an existing category merges into it when its modifier is a value of
  another key (kept as that attribute: "Winter Jacket" -> "Jacket" + season "winter"), a part noun, an
  adjective ("Dial Watch" -> "Watch") or a modifier phrase ("Knee Length Skirt" -> "Skirt"); a noun-noun
  compound ("Sling Bag", "Flip Flops") stays a type.

:func:`head_fragments` then finds heads that exist only inside such compounds ("Flops" of "Flip Flops").
Each verdict becomes a recorded merge or drop of the vocab stage, which a review decision undoes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pinlanding.vocab.clustering import normalize_value
from pinlanding.vocab.extractors.lexicon import (COLOR_SYNONYMS, COLORS, DANGLING_WORDS, GENDER, PART_NOUNS,
                                                 PHRASE_TABLES, TYPE_SYNONYMS)

_WORD = re.compile(r"[a-z0-9]+(?:['’\-][a-z0-9]+)*")
_ADJECTIVE_ENDINGS = ("ed", "ible", "able", "less", "ful", "ous", "ive")  # coloured, reversible, sleeveless


@dataclass(frozen=True)
class Verdict:
    """What to do with one category value: ``keep``, ``merge`` into ``target`` or ``drop``, with the
    attributes of other keys its words carry (``extras``: (key, normalized value)) and the rule's name."""

    action: str
    rule: str = ""
    target: str | None = None
    extras: tuple[tuple[str, str], ...] = ()
    detail: str = ""


KEEP = Verdict("keep")


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, tuple[str, str]]:
    """Phrase -> (key, canonical value) over every word table but category."""
    out: dict[str, tuple[str, str]] = {}
    colors = {**{n: n for n in COLORS}, **COLOR_SYNONYMS}
    for key, table in (("color", colors), *PHRASE_TABLES.items()):
        for phrase, value in table.items():
            out.setdefault(phrase, (key, value))
    return out


def words_of(value: str) -> list[str]:
    return _WORD.findall(value.casefold().replace("’", "'"))


def _adjective(word: str) -> bool:
    return len(word) > 4 and word.endswith(_ADJECTIVE_ENDINGS)


class CategoryRules:
    """Judge category values against the run's categories and the other keys' values.

    ``categories``: normalized forms of the category values kept so far; ``others``: key -> normalized
    values of every other key (brand included).
    """

    def __init__(self, categories: set[str], others: dict[str, set[str]], fold_plurals: bool = True) -> None:
        self.categories = categories
        self.others = others
        self.fold_plurals = fold_plurals

    def _norm(self, words: list[str]) -> str:
        return normalize_value(" ".join(words), self.fold_plurals)

    def _existing(self, words: list[str], own: str) -> str | None:
        norm = self._norm(words)
        return norm if words and norm != own and norm in self.categories else None

    def _value_of(self, phrase: str) -> tuple[str, str] | None:
        """(key, normalized value) of a modifier phrase that is a value of another key in this run."""
        hit = _lexicon().get(phrase)
        if hit and normalize_value(hit[1], self.fold_plurals) in self.others.get(hit[0], set()):
            return hit[0], normalize_value(hit[1], self.fold_plurals)
        norm = normalize_value(phrase, self.fold_plurals)
        keys = sorted(k for k, values in self.others.items() if norm in values)
        return (keys[0], norm) if len(keys) == 1 else None

    def modifier(self, words: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
        """Split modifier words into values of other keys (longest phrases first) and the words left over."""
        values, left, i = [], [], 0
        while i < len(words):
            for n in range(min(3, len(words) - i), 0, -1):
                hit = self._value_of(" ".join(words[i:i + n]))
                if hit:
                    values.append(hit)
                    i += n
                    break
            else:
                left.append(words[i])
                i += 1
        return values, left

    def judge(self, value: str) -> Verdict:
        words = words_of(value)
        own = self._norm(words)
        if not words:
            return KEEP
        synonym = TYPE_SYNONYMS.get(" ".join(words)) or TYPE_SYNONYMS.get(words[-1])
        if synonym:
            words = words_of(synonym) if " ".join(words) in TYPE_SYNONYMS else words[:-1] + words_of(synonym)
            if target := self._existing(words, own):
                return Verdict("merge", "synonym", target, detail=f"a surface variant of '{synonym}'")
        if all(w in GENDER for w in words):
            return Verdict("drop", "audience", extras=tuple(self.modifier(words)[0]),
                           detail="an audience word: it belongs to gender")
        if (words[-1].endswith("'s") and words[-1] not in GENDER) or own in self.others.get("brand", set()):
            return Verdict("drop", "name", detail="a brand or retailer name, not a product type")
        if "with" in words[1:]:
            before = words[: words.index("with", 1)]
            target = self._existing(before, own)
            return (Verdict("merge", "with", target, detail="'X with Y' is an X") if target else
                    Verdict("drop", "with", detail="'X with Y' names X, which is no category here"))
        if len(words) > 1 and words[0] in DANGLING_WORDS:
            target = self._existing(words[1:], own)
            return (Verdict("merge", "fragment", target, detail=f"a fragment: '{words[0]}' heads a modifier")
                    if target else Verdict("drop", "fragment", detail=f"a fragment: '{words[0]}' heads a modifier"))
        return self._compound(words, own)

    def _compound(self, words: list[str], own: str) -> Verdict:
        """Merge into the longest existing head when the modifier is attribute values, part nouns or adjectives."""
        for i in range(1, len(words)):
            target = self._existing(words[i:], own)
            if target is None or (words[i] in DANGLING_WORDS and i < len(words) - 1):  # "length skirt": a fragment
                continue
            values, left = self.modifier(words[:i])
            if (left and left[-1] in DANGLING_WORDS) or all(w in PART_NOUNS or _adjective(w) for w in left):
                kept = ", ".join(f"{k}={v}" for k, v in values)
                return Verdict("merge", "head", target, tuple(values),
                               detail=f"'{' '.join(words[:i])}' modifies '{' '.join(words[i:])}'"
                                      + (f" ({kept} kept)" if kept else ""))
            return KEEP  # a noun-noun compound names its own type ("sling bag")
        return KEEP


def head_fragments(counts: dict[str, int], compounds: dict[str, list[str]], co: dict[tuple[str, str], int],
                   floor: int) -> dict[str, str]:
    """Heads that exist only inside compounds kept as types: normalized head -> the compound covering most.

    ``counts``: products per normalized category; ``compounds``: head -> normalized compounds ending in it
    that stay types; ``co``: products carrying both of a (sorted) pair. A head's own products are those
    carrying none of its compounds; fewer than ``floor`` of them and it is a fragment ("flops").
    """
    out: dict[str, str] = {}
    for head, comps in compounds.items():
        shared = {c: co.get((min(c, head), max(c, head)), 0) for c in comps}
        if shared and counts.get(head, 0) - sum(shared.values()) < floor and max(shared.values()) > 0:
            out[head] = max(shared, key=lambda c: (shared[c], c))
    return out
