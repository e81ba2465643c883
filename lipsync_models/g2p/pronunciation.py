"""One word's pronunciation: the CMU dictionary first, then, for words it lacks, in order:
possessive/plural of a known word, a known word plus a common suffix, a common prefix plus a known
word, a split into two or three known words, spelling out letters (acronyms without vowels), and
finally the letter-to-sound rules."""

from __future__ import annotations

import re

from .dictionary import cmu_dict, spell
from .rules import _VOW, letter_to_sound

# --- pronunciation ----------------------------------------------------------------------------

_SUFFIX_PHONES = (
    ("'s", None), ("s", None), ("es", None), ("ing", ["IH", "NG"]), ("ed", None), ("er", ["ER"]),
    ("ers", ["ER", "Z"]), ("ly", ["L", "IY"]), ("ness", ["N", "AH", "S"]), ("less", ["L", "AH", "S"]),
    ("ful", ["F", "AH", "L"]), ("ment", ["M", "AH", "N", "T"]), ("able", ["AH", "B", "AH", "L"]),
    ("ism", ["IH", "Z", "AH", "M"]), ("ist", ["IH", "S", "T"]), ("ish", ["IH", "SH"]), ("y", ["IY"]),
)
_VOICELESS = frozenset("P T K F TH S SH CH HH".split())
_SIBILANT = frozenset("S Z SH ZH CH JH".split())


def _plural(base: list[str]) -> list[str]:
    last = base[-1]
    if last in _SIBILANT:
        return base + ["IH", "Z"]
    return base + (["S"] if last in _VOICELESS else ["Z"])


def _past(base: list[str]) -> list[str]:
    last = base[-1]
    if last in ("T", "D"):
        return base + ["IH", "D"]
    return base + (["T"] if last in _VOICELESS else ["D"])


def _bases(stem: str) -> list[str]:
    """Spellings a suffix may have changed: hop(p)ing, mak(e)ing, carr(y)->carri-ed."""
    out = [stem]
    if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls":
        out.append(stem[:-1])
    out.append(stem + "e")
    if stem.endswith("i"):
        out.append(stem[:-1] + "y")
    return out


def _by_suffix(word: str, d: dict[str, list[str]]) -> list[str] | None:
    for suf, phones in _SUFFIX_PHONES:
        if not word.endswith(suf) or len(word) - len(suf) < 2:
            continue
        for base in _bases(word[: -len(suf)]):
            if base in d:
                b = d[base]
                if suf in ("s", "'s", "es"):
                    return _plural(b)
                if suf == "ed":
                    return _past(b)
                return b + phones
    return None


def _by_compound(word: str, d: dict[str, list[str]]) -> list[str] | None:
    """Split into two known words (each >= 4 letters; the longest head first), or three
    (each >= 3 letters)."""
    n = len(word)
    for cut in range(n - 4, 3, -1):
        head, tail = word[:cut], word[cut:]
        if head in d and tail in d:
            return d[head] + d[tail]
    for a in range(n - 3, 2, -1):
        head = word[:a]
        if head not in d:
            continue
        rest = word[a:]
        for b in range(len(rest) - 3, 2, -1):
            if rest[:b] in d and rest[b:] in d:
                return d[head] + d[rest[:b]] + d[rest[b:]]
    return None


_PREFIXES = (("un", ["AH", "N"]), ("re", ["R", "IY"]), ("pre", ["P", "R", "IY"]), ("dis", ["D", "IH", "S"]),
             ("mis", ["M", "IH", "S"]), ("non", ["N", "AA", "N"]), ("over", ["OW", "V", "ER"]),
             ("under", ["AH", "N", "D", "ER"]), ("anti", ["AE", "N", "T", "IY"]), ("out", ["AW", "T"]),
             ("super", ["S", "UW", "P", "ER"]), ("micro", ["M", "AY", "K", "R", "OW"]), ("co", ["K", "OW"]))


def _by_prefix(word: str, d: dict[str, list[str]]) -> list[str] | None:
    for pre, phones in _PREFIXES:
        rest = word[len(pre):]
        if word.startswith(pre) and len(rest) >= 3:
            if rest in d:
                return phones + d[rest]
            p = _by_suffix(rest, d)
            if p:
                return phones + p
    return None


def _rules_with_suffix(word: str) -> list[str]:
    """Letter-to-sound rules on the stem, regular English morphology for -s/-es/-ed/-ing."""
    for suf in ("ing", "ed", "es", "s"):
        stem = word[: -len(suf)]
        if not word.endswith(suf) or len(stem) < 3:
            continue
        if suf == "s" and stem.endswith(("s", "u", "i")):
            continue  # bus, menu, taxi: not a plural -s (or not one the rules can split)
        if suf == "es" and not stem.endswith(("s", "sh", "ch", "x", "z")):
            continue  # "hopes" is hope + s
        if stem[-1] == stem[-2] and stem[-1] not in "aeiousl":
            stem = stem[:-1]  # grokked -> grok
        base = letter_to_sound(stem)
        if suf == "ing":
            return base + ["IH", "NG"]
        if suf == "ed":
            return _past(base)
        return _plural(base)
    return letter_to_sound(word)


def pronounce(word: str, use_dict: bool = True) -> tuple[list[str], str]:
    """ARPAbet phones (no stress) for one normalised word and where they came from.

    Returns (phones, source) with source one of "dict", "suffix", "prefix", "compound",
    "spelled", "rules".
    """
    w = word.lower().strip()
    if not w:
        return [], "rules"
    d = cmu_dict() if use_dict else {}
    if w in d:
        return list(d[w]), "dict"
    core = w.replace("'", "") if w.count("'") and not w.endswith("'s") else w
    if core in d:
        return list(d[core]), "dict"
    if d:
        p = _by_suffix(w, d)
        if p:
            return p, "suffix"
        p = _by_prefix(core, d)
        if p:
            return p, "prefix"
        p = _by_compound(core, d)
        if p:
            return p, "compound"
    letters = re.sub(r"[^a-z]", "", w)
    if len(letters) <= 4 and not (set(letters) & _VOW) or len(letters) == 1:
        return spell(letters), "spelled"
    return _rules_with_suffix(letters), "rules"
