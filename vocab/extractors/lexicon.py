"""General-knowledge word tables for the embedded extractor (English fashion vocabulary).

These are dictionary facts (colour names and their sRGB values, fabric and pattern names, gender
words), not values copied from any catalogue's labels: they apply to any English apparel catalogue.
Each table maps a surface phrase (lowercase, single spaces) to its canonical value.
"""
from __future__ import annotations

# Colour names with approximate sRGB values (CSS/X11 where one exists, common retail usage otherwise).
# The image namer only uses names flagged True (a basic palette that pixels can tell apart).
COLORS: dict[str, tuple[tuple[int, int, int], bool]] = {
    "black": ((15, 15, 15), True),
    "white": ((250, 250, 250), True),
    "grey": ((128, 128, 128), True),
    "charcoal": ((60, 62, 66), True),
    "silver": ((192, 192, 192), True),
    "red": ((200, 30, 35), True),
    "maroon": ((110, 20, 35), True),
    "burgundy": ((128, 0, 32), False),
    "pink": ((240, 150, 180), True),
    "magenta": ((200, 30, 140), True),
    "fuchsia": ((255, 0, 255), False),
    "purple": ((110, 50, 140), True),
    "lavender": ((190, 170, 220), True),
    "violet": ((143, 0, 255), False),
    "mauve": ((224, 176, 255), False),
    "blue": ((40, 90, 190), True),
    "navy blue": ((25, 30, 70), True),
    "sky blue": ((135, 206, 235), False),
    "royal blue": ((65, 105, 225), False),
    "turquoise": ((64, 224, 208), False),
    "teal": ((0, 128, 128), True),
    "aqua": ((0, 255, 255), False),
    "green": ((40, 140, 60), True),
    "olive": ((110, 110, 40), True),
    "sea green": ((46, 139, 87), False),
    "lime green": ((50, 205, 50), False),
    "mint": ((170, 240, 200), False),
    "yellow": ((245, 215, 40), True),
    "mustard": ((210, 160, 30), True),
    "gold": ((200, 165, 70), True),
    "orange": ((240, 120, 30), True),
    "peach": ((255, 200, 165), True),
    "coral": ((255, 127, 80), False),
    "rust": ((183, 65, 14), False),
    "brown": ((110, 70, 40), True),
    "tan": ((200, 155, 105), True),
    "khaki": ((195, 176, 145), True),
    "beige": ((225, 210, 180), True),
    "cream": ((250, 245, 220), True),
    "off white": ((245, 242, 232), False),
    "copper": ((184, 115, 51), False),
    "bronze": ((205, 127, 50), False),
    "taupe": ((72, 60, 50), False),
    "nude": ((227, 188, 154), False),
    "skin": ((233, 196, 170), False),
    "rose": ((255, 0, 127), False),
    "wine": ((114, 47, 55), False),
    "indigo": ((75, 0, 130), False),
    "multicolour": ((128, 128, 128), False),
}

# Colour names that are also everyday nouns ("your skin", "a rose motif", "wine glass"): in running text they
# name a colour only with a colour word after them ("skin colour", "rose-coloured", "cream shade").
NOUN_COLORS: frozenset[str] = frozenset(
    "skin rose wine cream peach coral rust lavender mustard charcoal copper bronze".split())
COLOR_CUES: frozenset[str] = frozenset(
    "colour color coloured colored colours colors tone toned shade shades hue".split())

COLOR_SYNONYMS: dict[str, str] = {
    "gray": "grey", "navy": "navy blue", "off-white": "off white", "offwhite": "off white",
    "multi": "multicolour", "multicolor": "multicolour", "multi-colour": "multicolour", "multi-color": "multicolour",
    "multicoloured": "multicolour", "multicolored": "multicolour", "golden": "gold", "silvery": "silver",
    "violet": "violet", "fuschia": "fuchsia", "turquoise blue": "turquoise", "charcoal grey": "charcoal",
    "dark grey": "charcoal", "light grey": "grey", "light blue": "sky blue", "dark blue": "navy blue",
    "dark green": "green", "light green": "green", "light pink": "pink", "dark brown": "brown",
}

GENDER: dict[str, str] = {
    "men": "men", "man": "men", "mens": "men", "men's": "men", "male": "men", "gents": "men", "gentlemen": "men",
    "women": "women", "woman": "women", "womens": "women", "women's": "women", "female": "women",
    "ladies": "women", "lady": "women",
    "boys": "boys", "boy": "boys", "boy's": "boys", "girls": "girls", "girl": "girls", "girl's": "girls",
    "unisex": "unisex", "kids": "kids", "kid": "kids", "children": "kids", "infant": "kids", "baby": "kids",
    "for her": "women", "for him": "men",
    # audience words that name a department, not a product type ("kidswear" is no category)
    "kidswear": "kids", "kids wear": "kids", "childrenswear": "kids", "infants": "kids", "toddler": "kids",
    "toddlers": "kids", "babies": "kids", "menswear": "men", "womenswear": "women",
}

PATTERNS: dict[str, str] = {
    "solid": "solid", "plain": "solid", "printed": "printed", "print": "printed", "prints": "printed",
    "graphic": "printed", "striped": "striped", "stripes": "striped", "stripe": "striped", "pinstripe": "striped",
    "checked": "checked", "check": "checked", "checks": "checked", "checkered": "checked", "plaid": "checked",
    "tartan": "checked", "gingham": "checked", "floral": "floral", "flowers": "floral", "polka": "polka dot",
    "polka dot": "polka dot", "polka dots": "polka dot", "dotted": "polka dot", "paisley": "paisley",
    "geometric": "geometric", "abstract": "abstract", "camouflage": "camouflage", "camo": "camouflage",
    "animal print": "animal print", "leopard": "animal print", "zebra": "animal print",
    "houndstooth": "houndstooth", "herringbone": "herringbone", "embroidered": "embroidered",
    "embroidery": "embroidered", "lace": "lace", "colourblocked": "colourblocked", "colourblock": "colourblocked",
    "colorblock": "colourblocked", "color block": "colourblocked", "colour block": "colourblocked",
    "embellished": "embellished", "sequinned": "embellished", "sequin": "embellished", "textured": "textured",
    "tie-dye": "tie-dye", "tie and dye": "tie-dye", "ombre": "ombre", "argyle": "argyle", "woven": "woven",
    "self design": "self design", "self-design": "self design",
}

MATERIALS: dict[str, str] = {
    "cotton": "cotton", "pure cotton": "cotton", "organic cotton": "cotton", "polyester": "polyester",
    "poly": "polyester", "leather": "leather", "genuine leather": "leather", "suede": "suede",
    "synthetic leather": "synthetic leather", "faux leather": "synthetic leather", "pu": "synthetic leather",
    "leatherette": "synthetic leather", "synthetic": "synthetic", "canvas": "canvas", "nylon": "nylon",
    "denim": "denim", "silk": "silk", "wool": "wool", "woollen": "wool", "woolen": "wool", "merino": "wool",
    "linen": "linen", "viscose": "viscose", "rayon": "viscose", "modal": "modal", "elastane": "elastane",
    "spandex": "elastane", "lycra": "elastane", "mesh": "mesh", "satin": "satin", "chiffon": "chiffon",
    "georgette": "georgette", "velvet": "velvet", "fleece": "fleece", "rubber": "rubber", "eva": "rubber",
    "acrylic": "acrylic", "bamboo": "bamboo", "microfiber": "microfiber", "microfibre": "microfiber",
    "khadi": "khadi", "crepe": "crepe", "corduroy": "corduroy", "tweed": "tweed", "cashmere": "cashmere",
    "jute": "jute", "metal": "metal", "stainless steel": "stainless steel", "steel": "stainless steel",
    "brass": "brass", "plastic": "plastic", "glass": "glass", "ceramic": "ceramic", "wooden": "wood",
    "wood": "wood", "blended": "blended", "blend": "blended", "terry": "terry", "chambray": "chambray",
    "muslin": "muslin", "mull": "muslin", "lyocell": "lyocell", "tencel": "lyocell", "pvc": "pvc",
}

OCCASIONS: dict[str, str] = {
    "casual": "casual", "casual wear": "casual", "formal": "formal", "formal wear": "formal", "party": "party",
    "party wear": "party", "sports": "sports", "sport": "sports", "sports wear": "sports", "sportswear": "sports",
    "athletic": "sports", "running": "sports", "training": "sports", "gym": "sports", "workout": "sports",
    "ethnic": "ethnic", "ethnic wear": "ethnic", "wedding": "wedding", "festive": "festive", "office": "work",
    "work wear": "work", "workwear": "work", "beach": "beach", "evening": "evening", "evening wear": "evening",
    "lounge": "lounge", "loungewear": "lounge", "sleepwear": "sleep", "nightwear": "sleep", "travel": "travel",
}

SEASONS: dict[str, str] = {
    "summer": "summer", "winter": "winter", "winterwear": "winter", "winter wear": "winter", "spring": "spring",
    "autumn": "fall", "fall": "fall", "monsoon": "monsoon", "rainwear": "monsoon",
}

FITS: dict[str, str] = {
    "slim fit": "slim", "slim": "slim", "skinny": "skinny", "skinny fit": "skinny", "regular fit": "regular",
    "regular": "regular", "relaxed fit": "relaxed", "relaxed": "relaxed", "loose": "loose", "loose fit": "loose",
    "straight fit": "straight", "tapered": "tapered", "bootcut": "bootcut", "boot cut": "bootcut",
    "comfort fit": "comfort", "tailored": "tailored", "oversized": "oversized", "fitted": "fitted",
}

SLEEVES: dict[str, str] = {
    "short sleeves": "short", "short sleeve": "short", "half sleeves": "short", "half sleeve": "short",
    "long sleeves": "long", "long sleeve": "long", "full sleeves": "long", "full sleeve": "long",
    "sleeveless": "sleeveless", "three-quarter sleeves": "three-quarter", "3/4th sleeves": "three-quarter",
    "3/4 sleeves": "three-quarter", "cap sleeves": "cap", "roll-up sleeves": "roll-up",
}

NECKS: dict[str, str] = {
    "round neck": "round", "crew neck": "round", "v-neck": "v-neck", "v neck": "v-neck", "polo": "polo collar",
    "polo collar": "polo collar", "henley": "henley", "hooded": "hood", "hoodie": "hood", "hood": "hood",
    "mandarin collar": "mandarin collar", "boat neck": "boat", "turtle neck": "turtle", "turtleneck": "turtle",
    "high neck": "high", "scoop neck": "scoop", "cowl neck": "cowl", "halter": "halter", "strapless": "strapless",
    "collared": "collar", "spread collar": "collar", "button-down collar": "collar",
}

STYLES: dict[str, str] = {
    "boho": "boho", "bohemian": "boho", "vintage": "vintage", "retro": "retro",
    "sporty": "sporty", "minimalist": "minimal", "casual chic": "casual chic", "preppy": "preppy",
    "grunge": "grunge", "streetwear": "streetwear", "smart": "smart",
}

# Functional features of a product (a watch's display, a belt that reverses): what it does, not a style
# or an occasion. "classic" is in no table: it is praise, not a property.
FEATURES: dict[str, str] = {
    "analog": "analog", "analogue": "analog", "digital": "digital", "chronograph": "chronograph",
    "reversible": "reversible", "waterproof": "waterproof", "water resistant": "water resistant",
    "water-resistant": "water resistant", "polarised": "polarised", "polarized": "polarised",
    "foldable": "foldable", "quick dry": "quick dry", "quick-dry": "quick dry",
}

SHAPES: dict[str, str] = {
    "aviator": "aviator", "wayfarer": "wayfarer", "round toe": "round toe", "pointed toe": "pointed toe",
    "peep toe": "peep toe", "a-line": "a-line", "bodycon": "bodycon", "fit and flare": "fit and flare",
    "wrap": "wrap", "peplum": "peplum", "flared": "flared", "wedge": "wedge", "wedges": "wedge",
    "stiletto": "stiletto", "stilettos": "stiletto", "block heel": "block heel", "cat-eye": "cat-eye",
    "rectangle": "rectangle", "square": "square", "oval": "oval", "high top": "high top",
    "high-top": "high top", "low top": "low top", "mid top": "mid top",
}

# key -> phrase table; the order is the order matching happens in (longest phrases first within each).
PHRASE_TABLES: dict[str, dict[str, str]] = {
    "gender": GENDER,
    "pattern": PATTERNS,
    "material": MATERIALS,
    "occasion": OCCASIONS,
    "season": SEASONS,
    "fit": FITS,
    "sleeve": SLEEVES,
    "neck": NECKS,
    "style": STYLES,
    "shape": SHAPES,
    "feature": FEATURES,
}

# Parts of a product: a material named right before one describes that part ("rubber outsole", "metal
# frame"), and a part before a product type is a feature of it ("dial watch" is a watch).
PART_NOUNS: frozenset[str] = frozenset(
    "sole soles outsole outsoles midsole insole footbed lining buckle buckles strap straps trim trims zip zips "
    "zipper zippers button buttons pad pads tips case dial dials bezel frame frames arms temples lens lenses "
    "handle handles laces lace-ups hardware detailing detail details accents overlays piping hinges "
    "band chain clasp".split()
)

# Details a product carries: a pattern word right before one describes that detail, not the product's
# pattern ("embroidered logo", "printed label", "lace-up" closures); like PART_NOUNS, they also take a material.
DETAIL_NOUNS: frozenset[str] = PART_NOUNS | frozenset(
    "logo logos label labels patch patches motif motifs applique badge badges emblem "
    "up ups out brand branding initials monogram".split()  # "lace-up": a closure; "check out": a verb
)

# The same details named before the pattern word in running text ("brand name embroidered on the chest").
DETAIL_AFTER: frozenset[str] = frozenset(
    "logo logos label labels brand name initials monogram badge emblem contrast contrasting".split()
)
# Trim parts: a pattern placed on one ("stripes on the sleeves", "print on the left cuff") is the trim's, while a
# print on the front, chest or back is the product's.
TRIM_PARTS: frozenset[str] = frozenset(
    "sleeve sleeves side sides collar collars cuff cuffs shoulder shoulders hem hems placket waistband neckline "
    "yoke trim trims edge edges border borders pocket pockets strap straps heel heels toe tongue".split()
)
# Styling advice ("Team it with blue jeans", "Pair this with ..."): a sentence opening with one of these verbs and
# going on "with" within a few words names the items to wear it with, whose colours are not the product's.
STYLING_VERBS: frozenset[str] = frozenset("team pair style wear club match combine complete accessorise accessorize "
                                          "coordinate partner".split())
# A sentence saying the delivered product may look otherwise than its photo (a disclaimer, not a description).
DISCLAIMER_VERBS: frozenset[str] = frozenset("vary varies variation variations differ differs difference".split())
DISCLAIMER_OBJECTS: frozenset[str] = frozenset("display screen monitor image images photo photos picture shown".split())

# Words that head a modifier phrase, not a product type: a category phrase starting with one is a
# fragment of a longer phrase ("Length Skirt" from "Knee Length Skirt", "Sleeve Top" from "Long Sleeve Top").
DANGLING_WORDS: frozenset[str] = frozenset(
    "length sleeve sleeves neck neckline collar waist rise toe heel heeled top cut fit leg hem".split()
)

# Surface variants of one clothing type (general English retail usage), each to its canonical spelling.
TYPE_SYNONYMS: dict[str, str] = {
    "tee": "t-shirt", "tees": "t-shirt", "tshirt": "t-shirt", "tshirts": "t-shirt", "t shirt": "t-shirt",
    "t-shirts": "t-shirt", "tank": "tank top", "tanks": "tank top", "singlet": "vest", "sari": "saree",
    "saris": "saree", "sarees": "saree", "trainers": "sneakers", "spectacles": "eyeglasses",
    "sunnies": "sunglasses", "hoody": "hoodie", "hoodies": "hoodie", "jumper": "sweater", "pullover": "sweater",
    "deo": "deodorant", "specs": "eyeglasses", "tote": "tote bag", "joggers": "track pants",
}

# Care instructions ("Machine wash cold", "Do not iron on print/embroidery", "Dry in shade"): a sentence that
# opens with one of these words and names a care action gives washing advice, not the product's attributes.
CARE_OPENERS: frozenset[str] = frozenset(
    "do don't dont never avoid use machine hand wash dry tumble iron bleach turn wipe soak store professional "
    "wring mild steam".split()
)
# Words that open care lines ("Cold machine wash", "Line dry") but also product prose ("Light wash slim jeans",
# "Warm woollen sweater"): such a sentence is care advice only when short, or when the next word is one of
# CARE_MODIFIED ("Warm iron, do not iron on print").
CARE_MODIFIERS: frozenset[str] = frozenset("gentle cold warm light low medium line flat spot clean care".split())
CARE_MODIFIED: frozenset[str] = frozenset("iron machine hand tumble bleach".split())
CARE_MODIFIER_MAX_WORDS = 5
CARE_ACTIONS: tuple[str, ...] = (
    "wash", "washing", "bleach", "iron", "ironing", "tumble", "dry clean", "drying", "dry in",
    "dry flat", "dry under", "line dry", "detergent", "soak", "wring", "care",
)

# A fabric is named for its dominant fibre: a mix whose largest fibre reaches this share is that fibre.
DOMINANT_FIBRE_SHARE = 0.7

# Words that never head a product-type phrase (function words and packaging/size words).
NON_TYPE_WORDS: frozenset[str] = frozenset(
    "a an and the of for with in on by to from at only exclusive exclusively online set pack piece pcs pc combo kit "
    "new latest size sizes x xl xxl xs "
    "s m l free fit inch inches cm mm ml gm g kg litre liters l uk us eu".split()
)

# Canonical spelling of the common key names a model may use.
KEY_SYNONYMS: dict[str, str] = {
    "colour": "color", "colors": "color", "colours": "color", "primary_color": "color", "base_color": "color",
    "base_colour": "color", "main_color": "color", "product_type": "category", "type": "category",
    "article_type": "category", "item_type": "category", "categories": "category", "fabric": "material",
    "materials": "material", "print": "pattern", "patterns": "pattern", "usage": "occasion",
    "occasions": "occasion", "sex": "gender", "target_gender": "gender", "seasons": "season",
    "styles": "style", "sleeves": "sleeve", "sleeve_length": "sleeve", "neckline": "neck", "collar": "neck",
    "silhouette": "shape", "brand_name": "brand",
}

CORE_KEYS: tuple[str, ...] = (
    "category", "color", "material", "pattern", "style", "fit", "shape", "season", "occasion", "brand", "gender",
)
