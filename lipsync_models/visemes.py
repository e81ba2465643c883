"""Phonemes -> visemes: mapping tables and the per-frame mouth track.

Tables map ARPAbet phonemes (the 39 phones of the CMU dictionary, no stress digits) plus
``"SIL"`` to the shapes of a viseme set. Each table below names where its phoneme grouping
comes from; the grouping was read from the source's documentation and written out here.
"""

from __future__ import annotations

ARPABET = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
    "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T",
    "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)
"""The 39 phones of the CMU pronouncing dictionary (ARPAbet, stress digits removed)."""

# --- Rhubarb / Preston Blair -----------------------------------------------------------------
# Source: Rhubarb Lip Sync (D. S. Wolf) README, "Mouth shapes":
#   A  closed mouth for P, B, M (slight pressure between the lips)
#   B  slightly open mouth, clenched teeth: most consonants (K, S, T ...) and EE as in "bee"
#   C  open mouth: vowels such as EH ("men") and AE ("bat"); also some in-between shapes
#   D  wide open mouth: AA ("father")
#   E  slightly rounded mouth: AO ("off"), ER ("bird"); in-between for C/D -> F
#   F  puckered lips: UW ("you"), OW ("show"), W ("way")
#   G  upper teeth touching the lower lip: F, V
#   H  tongue raised behind the upper teeth: long L
#   X  idle / rest position (pauses)
# Rhubarb's own animation rules (src/animation/animationRules.cpp) allow several shapes for a
# consonant and pick the one closest to its neighbours; this table keeps ONE primary shape per
# phone, chosen by us from those documented descriptions. Diphthongs start with the shape
# given here and glide to the one in DIPHTHONG_TARGETS below (Rhubarb times the first part at
# 60% of the phone).
PHONEME_TO_RHUBARB: dict[str, str] = {
    # vowels
    "AA": "D",  # father: wide open
    "AE": "C",  # bat: open
    "AH": "C",  # but: open (short); Rhubarb uses D only for long AH
    "AO": "E",  # off: slightly rounded
    "AW": "D",  # how: open, glides to rounded E
    "AY": "D",  # my: open, glides to B (ee-like)
    "EH": "C",  # men: open
    "ER": "E",  # bird: slightly rounded
    "EY": "C",  # say: open, glides to B
    "IH": "B",  # bit: spread, nearly closed
    "IY": "B",  # bee: clenched, spread
    "OW": "E",  # show: rounded, glides to puckered F
    "OY": "E",  # boy: rounded, glides to B
    "UH": "F",  # book: puckered
    "UW": "F",  # you: puckered
    # bilabials: lips closed
    "B": "A", "M": "A", "P": "A",
    # labiodentals: upper teeth on lower lip
    "F": "G", "V": "G",
    # rounded approximant
    "W": "F",
    # lateral: tongue visible behind the upper teeth
    "L": "H",
    # r is lip-rounded in English
    "R": "E",
    # other consonants: slightly open, teeth together
    "CH": "B", "D": "B", "DH": "B", "G": "B", "HH": "B", "JH": "B", "K": "B", "N": "B",
    "NG": "B", "S": "B", "SH": "B", "T": "B", "TH": "B", "Y": "B", "Z": "B", "ZH": "B",
    # silence
    "SIL": "X",
}
"""ARPAbet (+ SIL) -> Rhubarb shape letter A-H or X (rest)."""
