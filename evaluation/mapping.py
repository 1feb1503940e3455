"""Explicit, inspectable mapping of vocabulary values onto ground-truth label values.

Fixed rules of general fashion knowledge, the same for every run (never tuned on a run's results):

1. **Key -> family**: :data:`FAMILY_OF_KEY` names the attribute family a vocabulary key belongs to
   (``color`` and ``colour`` are the colour family, ``fabric`` is material, ``usage`` is occasion...).
2. **Normalisation** (:func:`normalize`): Unicode NFKC, lowercase, ``&`` -> ``and``, punctuation and
   hyphens become spaces, each word singularised (:func:`singular`).
3. **Synonyms** (:data:`SYNONYMS`): per family, normalised phrase -> canonical value
   (``tee``/``t shirt`` -> ``tshirt``, ``gray`` -> ``grey``, ``plaid`` -> ``checked``).
4. **Narrower values** (:data:`NARROWER`, plus the colour shade rule): a collection value also accepts
   the label values that are kinds of it (a ``navy blue`` product belongs in a ``blue`` collection,
   a ``unisex`` one in a ``men`` collection), never the reverse.

The vocabulary side and the label side go through the same :func:`canonical`, so both meet in one
space of ``(family, canonical value)`` pairs; search queries are parsed into the same space by
:mod:`pinlanding.evaluation.intent`. This module is label-free: only :func:`accepted_values` is given
label values, by the caller.

Evaluation keeps its own lexicon and plural rule on purpose, apart from the text forms extraction and
curation use (:mod:`pinlanding.collections.text`, :mod:`pinlanding.vocab.extractors.lexicon`): a change
to how the pipeline extracts or curates cannot also move the yardstick. The two plural rules differ where
grading needs it: labels name ``Kurtis`` and ``Capris``, which :func:`singular` folds to ``kurti`` and
``capri``, while the pipeline keeps ``-is`` words as they are (``levis``). Two parts of the pipeline do
read this module, so that they land in the space evaluation measures: topic ids
(:func:`pinlanding.vocab.topics.canonical_attribute`) and the feed API's query matching
(:mod:`pinlanding.feeds.matching`, :mod:`pinlanding.feeds.api`).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

FAMILIES = ("category", "colour", "material", "pattern", "season", "occasion", "gender", "brand",
            "fit", "sleeve", "neck", "length")
# the families PinLanding reports; fit/sleeve/neck/length are judged too when the labels carry them
CORE_FAMILIES = FAMILIES[:8]

FAMILY_OF_KEY: dict[str, str] = {
    "category": "category", "type": "category", "article_type": "category", "product_type": "category",
    "item": "category", "garment": "category", "product": "category", "subcategory": "category",
    "color": "colour", "colour": "colour", "base_colour": "colour", "base_color": "colour",
    "material": "material", "fabric": "material",
    "pattern": "pattern", "print": "pattern",
    "season": "season",
    "occasion": "occasion", "usage": "occasion",
    "gender": "gender", "audience": "gender",
    "brand": "brand",
    "fit": "fit",
    "sleeve": "sleeve", "sleeve_length": "sleeve", "sleeves": "sleeve",
    "neck": "neck", "neckline": "neck", "collar": "neck",
    "length": "length", "hemline": "length",
}

# Words whose trailing "s" is not a plural (checked before the suffix rules of `singular`).
_KEEP = {"canvas", "lens", "always", "does", "goes", "series", "species", "news", "perhaps", "jodhpurs", "this",
         "his", "tennis", "chassis", "iris", "axis", "basis"}
_IRREGULAR = {"scarves": "scarf", "knives": "knife", "wolves": "wolf", "leaves": "leaf", "women": "women",
              "men": "men", "children": "kid", "kids": "kid", "boys": "boy", "girls": "girl", "mens": "men",
              "womens": "women", "feet": "foot", "teeth": "tooth", "clothes": "clothing", "bras": "bra",
              "sports": "sport", "glasses": "glass", "sunglasses": "sunglass", "dresses": "dress",
              "accessories": "accessory", "ladies": "lady", "hoodies": "hoodie", "bodies": "body",
              "panties": "panty", "boxes": "box", "canvas": "canvas", "chinos": "chino", "mules": "mule"}


def singular(word: str) -> str:
    """English singular of one lowercase word: the exceptions above, then suffix rules (evaluation's own,
    on purpose: see the module docstring)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or word in _KEEP or word.endswith(("ss", "us")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


_PUNCT = re.compile(r"[^\w]+", re.UNICODE)


def normalize(text: str) -> str:
    """Lowercase, punctuation-free, singularised form of a phrase (``"T-Shirts"`` -> ``"t shirt"``)."""
    text = unicodedata.normalize("NFKC", str(text or "")).lower().replace("&", " and ").replace("'s", "s")
    words = [w for w in _PUNCT.sub(" ", text).replace("_", " ").split() if w]
    return " ".join(singular(w) for w in words)


def _table(groups: dict[str, Iterable[str]]) -> dict[str, str]:
    """Invert ``canonical -> variants`` into ``normalised variant -> canonical`` (canonical maps to itself)."""
    out: dict[str, str] = {}
    for canon, variants in groups.items():
        for v in (canon, *variants):
            out[normalize(v)] = normalize(canon)
    return out


# family -> normalised variant -> canonical value. Canonical values are written normalised.
SYNONYMS: dict[str, dict[str, str]] = {
    "category": _table({
        "tshirt": ["tee", "tees", "t shirt", "tee shirt", "t-shirts", "tshirts"],
        "top": ["tops", "blouse"], "shirt": ["shirts"], "dress": ["frock", "gown"],
        "jean": ["jeans", "denim jeans"], "trouser": ["pants", "pant", "slacks"],
        "track pant": ["trackpants", "joggers", "jogger", "sweatpants"], "short": ["shorts"],
        "skirt": [], "legging": ["leggings"], "jacket": ["jackets"], "blazer": ["blazers", "suit jacket"],
        "sweater": ["jumper", "pullover", "cardigan"], "sweatshirt": ["hoodie", "hoody", "hooded sweatshirt"],
        "kurta": [], "kurti": [], "saree": ["sari"], "tunic": [], "bra": ["brassiere"], "brief": ["underpants"],
        "casual shoe": ["casual shoes"], "sports shoe": ["running shoe", "training shoe", "athletic shoe"],
        "formal shoe": ["dress shoe", "oxford"], "shoe": ["footwears"], "footwear": [],
        "heel": ["high heel", "pump", "stiletto"], "flat": ["ballerina", "ballet flat"], "sandal": [],
        "flip flop": ["flipflop", "slipper", "chappal"], "sneaker": ["trainer"],
        "handbag": ["purse", "hand bag"], "bag": [], "backpack": ["rucksack", "back pack"], "clutch": [],
        "wallet": [], "belt": [], "watch": ["wristwatch", "wrist watch"], "sunglass": ["shade", "sun glass"],
        "cap": ["baseball cap"], "hat": [], "scarf": [], "sock": [], "tie": ["necktie"],
        "jewellery": ["jewelry"], "earring": [], "necklace and chain": ["necklace", "chain", "pendant"],
        "perfume and body mist": ["perfume", "fragrance", "body mist", "eau de toilette", "cologne"],
        "deodorant": ["deo"], "nail polish": ["nail paint", "nail lacquer"], "lipstick": [],
        "apparel": ["clothing", "clothe", "garment"], "accessory": [], "topwear": [], "bottomwear": [],
        "innerwear": ["underwear", "lingerie"], "nightdress": ["nightie", "night dress", "nightgown"],
        "night suit": ["pajama set", "pyjama set"], "swimwear": ["swimsuit", "bikini"],
        "jumpsuit": ["romper", "playsuit"], "coat": ["overcoat", "trench coat"], "vest": ["waistcoat"],
    }),
    "colour": _table({
        "grey": ["gray"], "navy blue": ["navy"], "multi": ["multicolor", "multicolour", "multi color",
                                                           "multi colour", "multicoloured", "multicolored"],
        "off white": ["offwhite", "ivory"], "gold": ["golden"], "silver": ["silvery"],
        "burgundy": ["wine", "oxblood"], "magenta": ["fuchsia"], "turquoise blue": ["turquoise", "aqua"],
        "mustard": ["mustard yellow"], "olive": ["olive green"], "beige": ["nude", "camel"],
        "grey melange": ["heather grey", "melange grey", "grey marl"], "charcoal": ["charcoal grey"],
        "purple": ["violet"], "khaki": [], "maroon": [], "cream": [], "peach": [], "lavender": ["lilac"],
        "teal": [], "black": [], "white": [], "blue": [], "red": [], "green": [], "pink": [], "yellow": [],
        "orange": [], "brown": [], "tan": [], "rust": [], "copper": [], "bronze": [], "steel": [],
        "mauve": [], "coffee brown": ["coffee", "chocolate brown", "chocolate"], "sea green": [],
    }),
    "material": _table({
        "cotton": ["cottons"], "pure cotton": ["100 cotton"], "polyester": ["poly"], "silk": [], "wool": ["woollen", "woolen"],
        "linen": [], "leather": ["genuine leather", "real leather"], "denim": [],
        "synthetic leather": ["faux leather", "pu leather", "vegan leather", "leatherette", "pu"],
        "viscose rayon": ["viscose", "rayon"], "nylon": [], "elastane": ["spandex", "lycra"], "canvas": [],
        "suede": [], "synthetic": [], "blended": ["blend"], "mesh": [], "satin": [], "chiffon": [],
        "georgette": [], "velvet": [], "fleece": [], "knit": ["knitted", "jersey"], "acrylic": [], "modal": [],
    }),
    "pattern": _table({
        "solid": ["plain", "solids"], "striped": ["stripe", "stripes", "stripy"],
        "checked": ["check", "checks", "checkered", "chequered", "plaid", "gingham"],
        "printed": ["print", "prints"], "floral": ["flower", "flowery", "floral print"],
        "polka dot": ["polka", "dotted", "polka dots", "dots"], "graphic": ["graphic print"],
        "typography": ["slogan", "text print"], "abstract": [], "geometric": [], "animal": ["leopard", "zebra"],
        "self design": [], "embroidered": ["embroidery"], "colourblocked": ["colorblock", "colour block",
                                                                          "color blocked", "colourblock"],
        "lace": [], "camouflage": ["camo"], "tartan checks": ["tartan"], "paisley": [], "tie dye": ["tiedye"],
    }),
    "season": _table({"summer": [], "winter": [], "fall": ["autumn"], "spring": []}),
    "occasion": _table({
        "casual": ["everyday casual"], "formal": ["office wear", "business"], "sport": ["sporty", "athletic", "gym",
                                                                                     "workout", "training", "active"],
        "ethnic": ["traditional", "festive ethnic"], "party": ["partywear", "party wear", "evening"],
        "smart casual": [], "travel": [], "work": ["office"], "everyday": ["daily"], "wedding": ["bridal"],
        "festive": [], "beach": [], "lounge": ["loungewear", "home"],
    }),
    "gender": _table({
        "men": ["man", "male", "gents", "gent", "menswear"], "women": ["woman", "female", "lady", "womenswear"],
        "boy": [], "girl": [], "kid": ["child", "children"], "unisex": [],
    }),
    "fit": _table({"regular": ["regular fit"], "slim": ["slim fit"], "skinny": ["skinny fit"],
                   "loose": ["loose fit", "relaxed", "relaxed fit", "oversized"], "tight": ["tight fit", "bodycon"],
                   "tapered": ["tapered fit"], "straight": ["straight fit"], "bootcut": ["boot cut"]}),
    "sleeve": _table({"short sleeve": ["half sleeve", "short sleeved", "half sleeved"],
                      "long sleeve": ["full sleeve", "long sleeved", "full sleeved"],
                      "sleeveless": ["no sleeve", "without sleeve"],
                      "three quarter sleeve": ["3 4 sleeve", "three fourth sleeve", "quarter sleeve"]}),
    "neck": _table({"round neck": ["crew neck"], "v neck": ["vneck"], "polo collar": ["polo"],
                    "mandarin collar": ["mandarin", "chinese collar"], "boat neck": [], "scoop neck": [],
                    "square neck": [], "halter neck": ["halter"], "cowl neck": [], "high neck": ["turtleneck",
                                                                                                  "turtle neck"],
                    "off shoulder": [], "strapless": [], "shirt collar": ["spread collar"],
                    "hooded": ["hood"]}),
    "length": _table({"mini": ["mini length"], "midi": ["midi length", "mid length"], "maxi": ["maxi length",
                                                                                         "floor length"],
                      "knee length": [], "above knee": [], "ankle length": ["full length"],
                      "above ankle": ["cropped length"], "crop": ["cropped"]}),
    "brand": {},
}

# family -> canonical value -> the narrower canonical values it also accepts (a kind-of relation);
# written readably here, normalised below.
_NARROWER: dict[str, dict[str, set[str]]] = {
    "category": {"shoe": {"casual shoe", "sports shoe", "formal shoe", "sneaker"},
                 "sneaker": set(), "bag": {"handbag", "backpack", "clutch"},
                 "jewellery": {"earring", "necklace and chain", "ring", "bracelet", "bangle"},
                 "innerwear": {"bra", "brief", "trunk", "boxer"}},
    "colour": {"grey": {"charcoal", "steel", "grey melange"}, "red": {"maroon", "burgundy"}, "green": {"olive", "teal"},
               "white": {"off white", "cream"}, "brown": {"tan", "coffee brown", "rust", "bronze"},
               "yellow": {"mustard"}, "purple": {"lavender", "mauve"}, "pink": {"magenta", "peach"}},
    "material": {"cotton": {"pure cotton", "cotton blend", "cotton linen"}, "silk": {"pure silk", "dupion silk",
                                                                                    "silk blend"},
                 "leather": {"patent leather"}, "blended": {"cotton blend", "silk blend"}, "synthetic": {"synthetic leather", "synthetic suede", "polyester",
                                                              "nylon"}},
    "pattern": {"printed": {"floral", "graphic", "typography", "abstract", "geometric", "animal", "polka dot",
                            "camouflage", "paisley", "conversational", "ethnic motif", "tie dye"},
                "striped": {"horizontal stripe", "vertical stripe", "pinstripe"},
                "checked": {"tartan checks", "other check", "tartan check"}},
    "occasion": {"casual": {"smart casual"}},
    "gender": {"men": {"unisex"}, "women": {"unisex"}, "kid": {"boy", "girl"}},
}
NARROWER: dict[str, dict[str, set[str]]] = {
    fam: {normalize(k): {normalize(v) for v in vs} for k, vs in table.items()} for fam, table in _NARROWER.items()
}

# colour names whose last word is a base colour are shades of it ("navy blue" is a blue)
_BASE_COLOURS = {"black", "white", "blue", "red", "green", "pink", "yellow", "orange", "brown", "grey", "purple"}
# head-final compounds: a value accepts every longer one ending in it (a "lounge short" is a short, a spread collar
# a collar); for colour only the base colours (a navy blue is a blue, a rose gold no gold). None: every value
_HEAD_FINAL: dict[str, set[str] | None] = {"category": None, "colour": _BASE_COLOURS, "neck": {"collar"}}


def attr_key(key: str, value: str) -> tuple[str, str]:
    """A vocabulary attribute in the shared space: ``(family, canonical)``, or ``(normalised key, value)``
    for a key no family covers (``style``), so that such keys still count as demand and coverage."""
    family = family_of(key)
    if family:
        return family, canonical(family, value)
    return normalize(key).replace(" ", "_"), normalize(value)


def family_of(key: str) -> str | None:
    """The attribute family of a vocabulary key, or None when no family judges it (``style``...)."""
    return FAMILY_OF_KEY.get(normalize(key).replace(" ", "_")) or FAMILY_OF_KEY.get(str(key).strip().lower())


_BARE_SUFFIX = {"sleeve": "sleeve", "neck": "neck"}  # vocabulary values often drop the family word


def canonical(family: str, value: str) -> str:
    """The canonical form of ``value`` in ``family`` (normalised, synonyms resolved)."""
    if family == "brand":  # names are not singularised ("ADIDAS"); spacing and punctuation are ignored
        text = unicodedata.normalize("NFKC", str(value or "")).lower().replace("&", "and")
        return _PUNCT.sub("", text).replace("_", "")
    norm = normalize(value)
    table = SYNONYMS.get(family, {})
    bare = f"{norm} {_BARE_SUFFIX.get(family)}"
    if norm not in table and bare in table:  # "sleeve: long" is a long sleeve (not in query parsing: "long dress")
        norm = bare
    return table.get(norm, norm)


def narrower(family: str, value: str) -> set[str]:
    """Canonical values that are kinds of ``value`` (itself included)."""
    return {value} | NARROWER.get(family, {}).get(value, set())


def accepts(family: str, collection_value: str, label_value: str) -> bool:
    """Whether a product labelled ``label_value`` belongs in a collection whose value is ``collection_value``.

    Both arguments are canonical values of ``family``.
    """
    if label_value in narrower(family, collection_value):
        return True
    heads = _HEAD_FINAL.get(family, set())
    return (heads is None or collection_value in heads) and label_value.endswith(" " + collection_value)


def accepted_values(family: str, collection_value: str, label_values: Iterable[str]) -> set[str]:
    """The canonical label values (among ``label_values``) a collection value accepts."""
    return {lv for lv in label_values if accepts(family, collection_value, lv)}


def how_matched(family: str, raw_value: str, collection_value: str, accepted: set[str]) -> str:
    """Which rule matched: ``exact``, ``synonym``, ``narrower`` or ``unmatched`` (for the mapping report).

    (A value no rule matches may still be judged by decomposition, see
    :meth:`pinlanding.evaluation.judge.Judge.attribute`.)"""
    if not accepted:
        return "unmatched"
    if collection_value in accepted:
        return "exact" if normalize(raw_value) == collection_value or family == "brand" else "synonym"
    return "narrower"
