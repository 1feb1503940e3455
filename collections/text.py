"""Text normalization shared by the stages: one module, one function per meaning.

- :func:`plain_text`: catalogue text as stored (markup removed, NFC, line breaks kept). Ingest writes it.
- :func:`one_line`: text as a model reads or writes it: :func:`plain_text` folded further (NFKC, so
  full-width letters and ligatures become plain ones; anything left in angle brackets dropped; every
  whitespace run one space).
- :func:`key_form`: the spelling of an attribute key (``" Sleeve Length"`` -> ``"sleeve_length"``), no
  synonyms: a key written by a person names exactly the key stored in the vocabulary. The extractors'
  synonym mapping (``sleeve_length`` -> ``sleeve``) is :func:`pinlanding.vocab.parsing.canonical_key`.
- :func:`split_words`: the words of a value, title or query.
- :func:`singular`: the one plural rule of the pipeline.
"""
from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINE_SPACES = re.compile(r"[ \t\u00a0]+")
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+")  # a run of letters or digits, any script
_KEY_SEPARATORS = re.compile(r"[\s\-/]+")
_TAG = re.compile(r"<[/!?]?[A-Za-z][^<>]*>")
_LOOSE_TAG = re.compile(r"<[^>]{0,500}>")  # anything in angle brackets, malformed tags too ("< b>")
_MARKUP_PASSES = 4  # entity layers decoded (``&amp;lt;b&amp;gt;``); deeper nesting is left to the last strip


class _DropFormat(dict):
    """``str.translate`` table dropping Unicode format characters (category Cf: bidi overrides and isolates,
    zero-width spaces and joiners, BOM, soft hyphen), which can make a title read otherwise than it says;
    filled as characters are met (the standard library's re has no Unicode category classes)."""

    def __missing__(self, code: int) -> int | None:
        self[code] = None if unicodedata.category(chr(code)) == "Cf" else code
        return self[code]


_FORMAT = _DropFormat()


class _TextExtractor(HTMLParser):
    """Collects the text content of an HTML fragment (stdlib parser; markup in feeds is common)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("br", "p", "li", "div"):
            self.parts.append("\n")


def strip_markup(text: str) -> str:
    """Plain text of an HTML fragment. Entities are decoded before tags are stripped, layer after layer, so
    ``&lt;script&gt;`` (or ``&amp;lt;script&amp;gt;``) goes the way of ``<script>``; a fragment nested
    deeper than the passes allow loses whatever still looks like a tag."""
    for _ in range(_MARKUP_PASSES):
        if "<" not in text and "&" not in text:
            return text
        parser = _TextExtractor()
        parser.feed(html.unescape(text))
        parser.close()
        plain = "".join(parser.parts)
        if plain == text:
            return text
        text = plain
    return _TAG.sub("", text)


def strip_controls(text: str) -> str:
    """Every Unicode control, format or unassigned character replaced by a space."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)


def plain_text(text: str) -> str:
    """Catalogue text as stored: markup removed, format characters dropped, controls made spaces, NFC,
    whitespace collapsed within each line and empty lines dropped (line breaks are kept)."""
    text = strip_markup(text)
    if not text.isascii():
        text = text.translate(_FORMAT).replace("\u2028", "\n").replace("\u2029", "\n")
    text = unicodedata.normalize("NFC", _CONTROL.sub(" ", text))
    lines = [_LINE_SPACES.sub(" ", line).strip() for line in text.replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line).strip()


def one_line(text: Any) -> str:
    """Text as a model reads or writes it: :func:`plain_text`, then NFKC, whatever still sits in angle
    brackets (malformed tags such as ``< b>``, which the HTML parser keeps as text) removed, and every
    whitespace run (line breaks included) one space; case is kept. ``None`` is ``""``."""
    if text is None:
        return ""
    text = str(text)
    if text.isascii() and "<" not in text and "&" not in text:
        # The same result, fast: such text has no markup, entities or non-ASCII forms, so the steps
        # above only turn control characters into spaces and collapse whitespace (tests/collections/test_text.py)
        return " ".join(_CONTROL.sub(" ", text).split())
    text = _LOOSE_TAG.sub(" ", unicodedata.normalize("NFKC", plain_text(text)))
    return _WHITESPACE.sub(" ", text).strip()


def key_form(key: Any) -> str:
    """The spelling of an attribute key: ``" Sleeve Length"`` -> ``"sleeve_length"`` (NFKC, casefolded,
    each run of spaces, hyphens and slashes one underscore). No synonyms: see the module docstring."""
    key = unicodedata.normalize("NFKC", strip_controls(str(key))).casefold()
    return _KEY_SEPARATORS.sub("_", key).strip("_")


def split_words(text: Any, fold_plurals: bool = False) -> list[str]:
    """Casefolded words (NFKC; runs of letters or digits of any script): ``"T-Shirts"`` -> ``["t", "shirts"]``,
    with ``fold_plurals`` each one :func:`singular` (``["t", "shirt"]``)."""
    found = _WORD.findall(unicodedata.normalize("NFKC", str(text)).casefold())
    return [singular(w) for w in found] if fold_plurals else found


def singular(word: str) -> str:
    """English plural -> singular of one lowercase word: ``dresses`` -> ``dress``, ``ladies`` -> ``lady``.

    Suffix rules rather than ``inflect``: on the dev catalogue's 5,619 title and value words inflect
    disagrees with these rules on 129, mostly brand and short words it singularizes wrongly (``levis``
    -> ``levi``, ``tennis`` -> ``tenni``, ``as`` -> ``a``, ``us`` -> ``me``) or plurals it keeps (``trousers``).
    """
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word
