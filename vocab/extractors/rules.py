"""Phrase matching over product text with the general-knowledge tables of :mod:`.lexicon`.

Each key gets one compiled regular expression (longest phrases first, word-bounded), so matching a
title is a handful of regex scans. Title-phrase candidates for the product type are the last content
words of the title (brand, colour, gender, pattern and material words removed); the embedded backend
validates them against the whole catalogue in its refine pass.
"""
from __future__ import annotations

import re
from functools import lru_cache

from pinlanding.collections.text import singular
from pinlanding.vocab.extractors.lexicon import (CARE_ACTIONS, CARE_MODIFIED, CARE_MODIFIER_MAX_WORDS, CARE_MODIFIERS,
                                                 CARE_OPENERS, COLOR_CUES, COLOR_SYNONYMS, COLORS, DETAIL_AFTER,
                                                 DETAIL_NOUNS, DISCLAIMER_OBJECTS, DISCLAIMER_VERBS, DOMINANT_FIBRE_SHARE,
                                                 NON_TYPE_WORDS, NOUN_COLORS, PART_NOUNS, PHRASE_TABLES,
                                                 STYLING_VERBS, TRIM_PARTS)

_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")
_MATERIAL_CUE = re.compile(
    r"(?:made (?:of|from|with)|crafted (?:from|in|with)|fabric|material(?:s)?(?: and care)?|composition|upper|"
    r"\d{1,3}\s?%)\s*:?\s*([^\n.;]{0,80})", re.IGNORECASE)


@lru_cache(maxsize=None)
def _table(key: str) -> dict[str, str]:
    if key == "color":
        return {**{n: n for n in COLORS}, **COLOR_SYNONYMS}
    return PHRASE_TABLES[key]


@lru_cache(maxsize=None)
def _pattern(key: str) -> re.Pattern[str]:
    phrases = sorted(_table(key), key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(p) for p in phrases) + r")(?![a-z0-9])")


_NEXT_WORD = re.compile(r"[\s\-]*([a-z]+(?:-[a-z]+)?)")
_PART_KEYS = {"material": PART_NOUNS, "pattern": DETAIL_NOUNS}  # keys whose words can describe a part instead


def _followed_by(text: str, end: int, words: frozenset[str]) -> bool:
    """Whether the word right after ``end`` is one of ``words`` ("rubber outsole": a part noun follows)."""
    m = _NEXT_WORD.match(text, end)
    return bool(m) and m.group(1) in words


_PREVIOUS_WORD = re.compile(r"([a-z]+)[\s\-]*$")


def _preceded_by(text: str, start: int, words: frozenset[str]) -> bool:
    """Whether the word right before ``start`` is one of ``words`` ("logo embroidered on the chest")."""
    m = _PREVIOUS_WORD.search(text, 0, start)
    return bool(m) and m.group(1) in words


_PLACED_ON = re.compile(r"\s+(?:on|at|along|across|down|around)\s+(?:the\s+|its\s+|both\s+)?([a-z]+)(?:\s+([a-z]+))?")


def _on_trim(text: str, end: int) -> bool:
    """Whether the phrase after ``end`` places it on a trim part ("stripes on the sleeves", "on the left cuff")."""
    m = _PLACED_ON.match(text, end)
    return bool(m) and (m.group(1) in TRIM_PARTS or m.group(2) in TRIM_PARTS)


def match(key: str, text: str, prose: bool = False) -> list[tuple[str, str]]:
    """(canonical value, phrase as written) of ``key`` in ``text``, in order of appearance, one per value.

    A material right before a part noun ("rubber outsole", "metal frame") is the part's, not the product's;
    a pattern right before a detail ("embroidered logo", "printed label", "lace-up") is the detail's. In
    ``prose`` (a description, not a title's list of attributes), so is a pattern right after one ("brand name
    embroidered on the chest", "contrast stripes") or placed on a trim ("stripes on the sleeves"), and a colour
    name that is also a noun needs a colour word after it ("skin colour", not "your skin").
    """
    table = _table(key)
    low = text.lower()
    out: dict[str, str] = {}
    for m in _pattern(key).finditer(low):
        if key in _PART_KEYS and _followed_by(low, m.end(), _PART_KEYS[key]):
            continue
        if prose and key == "pattern" and (_preceded_by(low, m.start(), DETAIL_AFTER) or _on_trim(low, m.end())):
            continue
        if prose and key == "color" and m.group(1) in NOUN_COLORS and not _followed_by(low, m.end(), COLOR_CUES):
            continue
        out.setdefault(table[m.group(1)], m.group(1))
    return list(out.items())


# sentence ends, line breaks and list bullets ("• Machine wash cold • 100% cotton" on one line of a feed)
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+|\s*[\u2022\u00b7\u25aa\u25cf\u25e6]\s*")
_CARE_ACTION = re.compile(r"(?<![a-z])(?:" + "|".join(re.escape(a) for a in CARE_ACTIONS) + r")(?![a-z])")


def is_care_instruction(sentence: str) -> bool:
    """Whether a sentence is washing advice: it opens with an imperative of care ("Do not", "Machine", "Dry"), or
    opens with a word of care and is short or goes on with a care verb ("Cold machine wash", "Warm iron, but do not
    iron on print"), and names a care action ("Do not use iron on print/embroidery" names no pattern of the
    product)."""
    low = sentence.strip().lower()
    words = _TOKEN.findall(low)
    opens = bool(words) and (words[0] in CARE_OPENERS or (words[0] in CARE_MODIFIERS and (
        len(words) <= CARE_MODIFIER_MAX_WORDS or words[1] in CARE_MODIFIED)))
    return opens and bool(_CARE_ACTION.search(low))


def is_disclaimer(sentence: str) -> bool:
    """Whether a sentence warns that the product may look otherwise than shown ("might vary in colour and prints
    from the display"): it names no attribute of the product."""
    words = set(_TOKEN.findall(sentence.lower()))
    return bool(words & DISCLAIMER_VERBS) and bool(words & DISCLAIMER_OBJECTS)


_STYLED_OBJECTS = frozenset("it this these them those that the your".split())


def is_styling_advice(sentence: str) -> bool:
    """Whether a sentence suggests what to wear the product with ("Team it with blue jeans and white sneakers"):
    it opens with a styling verb, then names the product ("it", "this", "these"), and says "with" within its next
    four words ("Style meets comfort with this shirt" is no advice)."""
    words = _TOKEN.findall(sentence.lower())
    return (len(words) > 2 and words[0] in STYLING_VERBS and words[1] in _STYLED_OBJECTS and "with" in words[2:5])


def without_boilerplate(text: str) -> str:
    """``text`` with the sentences that do not describe the product left out (care instructions, disclaimers,
    styling advice: :func:`is_care_instruction`, :func:`is_disclaimer`, :func:`is_styling_advice`), one sentence a
    line."""
    return "\n".join(s for s in _SENTENCE_END.split(text)
                     if s.strip() and not (is_care_instruction(s) or is_disclaimer(s) or is_styling_advice(s)))


_PERCENT = re.compile(r"(\d{1,3})\s?%\s*([a-z][a-z ]{2,30})", re.IGNORECASE)


_BLEND = re.compile(r"\bblend(?:ed)?\b", re.IGNORECASE)
_BLEND_NOUNS = {"fabric", "fabrics", "fibre", "fibres", "fiber", "fibers", "yarn", "yarns", "material", "materials"}


def is_blend(description: str) -> bool:
    """Whether the text gives a fibre mix with no dominant fibre ("60% cotton, 40% polyester"; "95% cotton,
    5% elastane" is cotton) or names a blend of fabrics: two or more fibres with "blend" in one phrase
    ("cotton-polyester blend"), "blended fabric", or "Blended" alone as the material. One named fibre is that
    fibre ("cotton blend"), and "a blend of comfort and style" names no fabric."""
    shares = fibre_shares(description)
    if len(shares) >= 2 and max(shares.values()) < 100 * DOMINANT_FIBRE_SHARE:
        return True
    for m in _BLEND.finditer(description):
        start = max(description.rfind(c, 0, m.start()) for c in "\n.;:") + 1
        ends = [i for i in (description.find(c, m.end()) for c in "\n.;") if i >= 0]
        phrase = description[start:min(ends, default=len(description))]
        fibres = sum(value != "blended" for value, _ in match("material", phrase))  # the lexicon knows "blend" too
        following = _NEXT_WORD.match(description.lower(), m.end())
        if fibres >= 2 or (fibres == 0 and ((following and following.group(1) in _BLEND_NOUNS)
                                            or phrase.strip().lower() == m.group(0).lower())):
            return True
    return False


@lru_cache(maxsize=1)  # one description is read by three rules in a row (shares, mentions, blend): parse it once
def fibre_shares(description: str) -> dict[str, int]:
    """Stated percentage of each fibre ("95% cotton, 5% elastane" -> {"cotton": 95, "elastane": 5}); the
    result is shared between callers, so it is read, never changed."""
    shares: dict[str, int] = {}
    for m in _PERCENT.finditer(description):
        for value, _ in match("material", m.group(2))[:1]:
            shares[value] = max(shares.get(value, 0), int(m.group(1)))
    return shares


def material_mentions(description: str) -> list[tuple[str, str]]:
    """Materials named right after a material cue ("made of", "fabric:", "100% ..."), as :func:`match`;
    a minor fibre of a stated mix (5% elastane) is not the product's material."""
    minor = {v for v, share in fibre_shares(description).items() if share < 100 * (1 - DOMINANT_FIBRE_SHARE)}
    out: dict[str, str] = {}
    for m in _MATERIAL_CUE.finditer(description):
        for value, phrase in match("material", m.group(1)):
            if value not in minor:
                out.setdefault(value, phrase)
    return list(out.items())


@lru_cache(maxsize=1)
def _attribute_words() -> frozenset[str]:
    """Single words of every table but occasions ("sports shoes" is a type, "slim jeans" is not)."""
    words: set[str] = set()
    for key in ("color", *PHRASE_TABLES):
        if key != "occasion":
            words.update(p for p in _table(key) if " " not in p)
    return frozenset(words)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def strip_brand(title_tokens: list[str], brand: str) -> list[str]:
    """Drop the brand's words where they lead the title (``"Nike Men ..."`` -> ``["men", ...]``)."""
    brand_tokens = tokens(brand)
    if brand_tokens and title_tokens[: len(brand_tokens)] == brand_tokens:
        return title_tokens[len(brand_tokens):]
    return [t for t in title_tokens if t not in set(brand_tokens)] if brand_tokens else title_tokens


def type_candidates(title_tokens: list[str], max_words: int = 3) -> list[str]:
    """Product-type phrases ending at the title's last content word, shortest first.

    In "X with Y" the product is X ("Churidar Kurta with Dupatta" is a kurta): the phrases end before "with".
    A trailing possessive is a name, not a type ("Skirt - Only Macy's" is a skirt).
    """
    if "with" in title_tokens[1:]:
        title_tokens = title_tokens[: title_tokens.index("with", 1)]
    attr = _attribute_words()
    i = len(title_tokens) - 1
    while i >= 0 and (any(c.isdigit() for c in title_tokens[i]) or title_tokens[i] in NON_TYPE_WORDS
                      or (title_tokens[i].endswith("'s") and title_tokens[i] not in attr)):
        i -= 1  # trailing codes, sizes, pack counts and names ("... Only at Macy's")
    if i < 0 or title_tokens[i] in attr or len(title_tokens[i]) < 2:
        return []
    out = [title_tokens[i]]
    j = i - 1
    while j >= 0 and len(out) < max_words:
        tok = title_tokens[j]
        if tok in attr or tok in NON_TYPE_WORDS or any(c.isdigit() for c in tok) or len(tok) < 2:
            break
        out.append(f"{tok} {out[-1]}")
        j -= 1
    return out


@lru_cache(maxsize=1 << 16)  # a catalogue repeats its title phrases; the refine passes key each many times
def phrase_key(phrase: str) -> str:
    """Spelling-insensitive key of a phrase: ``"T-Shirts"``, ``"tshirt"``, ``"t shirt"`` -> ``"tshirt"``."""
    words = [re.sub(r"[^a-z0-9]", "", w) for w in re.split(r"\s+", phrase.lower().strip())]
    words = [w for w in words if w]
    if not words:
        return ""
    words[-1] = singular(words[-1])
    return "".join(words)
