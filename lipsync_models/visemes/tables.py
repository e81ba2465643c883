"""Viseme tables: ARPAbet phonemes (the 39 phones of the CMU dictionary, no stress digits) plus
``"SIL"`` mapped to the shapes of a viseme set, with each set's glides, alternatives and mouth
parameters. Each table names where its phoneme grouping comes from; the grouping was read from
the source's documentation and written out here (published charts, not fitted on footage)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import InputError

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

RHUBARB_GLIDES: dict[str, str] = {"AW": "E", "AY": "B", "EY": "B", "OW": "F", "OY": "B"}
"""Diphthongs: the shape the mouth glides to over the last 40% of the phone (Rhubarb set)."""

RHUBARB_ALTERNATIVES: dict[str, frozenset[str]] = {
    "T": frozenset("BF"), "D": frozenset("BF"), "CH": frozenset("BF"), "JH": frozenset("BF"),
    "TH": frozenset("BF"), "DH": frozenset("BF"), "S": frozenset("BF"), "Z": frozenset("BF"),
    "SH": frozenset("BF"), "ZH": frozenset("BF"), "K": frozenset("BCEFH"), "G": frozenset("BCEFH"),
    "N": frozenset("BCFH"), "NG": frozenset("BCEF"), "R": frozenset("BEF"), "Y": frozenset("BCF"),
    "HH": frozenset("BCDEFGH"),
}
"""Consonants the lips do not make: besides their primary shape they may show any of these,
and take the one of the sound that follows when it is among them (anticipatory coarticulation:
the lips round through the "str" of "strew", HH takes its vowel's shape). The sets
are the shape choices Rhubarb's animation rules allow per phone (animationRules.cpp); Rhubarb
picks among them by effort, we pick the following shape when allowed, else the primary one."""

# Mouth parameters per shape, columns in MOUTH_PARAMS order:
#   (jaw_open, lip_spread, lip_round, lip_close, teeth_on_lip), each in [0, 1].
# jaw_open follows the openness each Rhubarb drawing shows (X/A closed, B a gap between the
# teeth, C open, D wide open, E half open and rounded, F small rounded opening, G nearly closed
# with the lower lip tucked under the upper teeth, H like a smaller C). These openness values
# were checked on the GRID clips (shared/FACTS.md: Rhubarb cues mapped this way follow the
# face-mesh lip gap at r ~ 0.6). lip_close is the lip press: 1 only where the lips press
# together (A); the rest pose X is closed by jaw_open 0 with the lips relaxed, so it gets a
# light 0.3 (generators thin the lips with the press; a pressed rest would look tense).
# The other sets use the same values for their rest and bilabial visemes.
RHUBARB_SHAPES: dict[str, tuple[float, float, float, float, float]] = {
    "X": (0.00, 0.20, 0.00, 0.30, 0.00),  # idle: closed, relaxed
    "A": (0.00, 0.25, 0.00, 1.00, 0.00),  # P B M: pressed closed
    "B": (0.25, 0.60, 0.00, 0.00, 0.00),  # clenched teeth, lips apart and spread (S, T, EE)
    "C": (0.55, 0.50, 0.00, 0.00, 0.00),  # open (EH, AE)
    "D": (1.00, 0.40, 0.00, 0.00, 0.00),  # wide open (AA)
    "E": (0.50, 0.10, 0.50, 0.00, 0.00),  # slightly rounded (AO, ER)
    "F": (0.30, 0.00, 1.00, 0.00, 0.00),  # puckered (UW, OW, W)
    "G": (0.20, 0.30, 0.00, 0.00, 1.00),  # F, V: upper teeth on the lower lip
    "H": (0.45, 0.40, 0.00, 0.00, 0.00),  # L: open, tongue behind the upper teeth
}

# --- Meta / Oculus OVR Lipsync, 15 visemes ---------------------------------------------------
# Source: Meta's "Viseme Reference" for Oculus Lipsync (also the OpenXR extension
# XR_META_face_tracking_visemes, enum XrFaceTrackingVisemeMETA, same order):
#   sil neutral | PP p b m | FF f v | TH th (think, that) | DD t d | kk k g | CH tS dZ S
#   (chair, join, she) | SS s z | nn n l | RR r | aa A: (car) | E e (bed) | ih ih (tip) |
#   oh oh (toe) | ou ou (book)
# The reference lists IPA-like examples, not ARPAbet; the ARPAbet assignment below is ours:
# vowels go to the nearest of the five vowel visemes (AE/AH -> aa as open vowels, ER -> RR as
# r-coloured, UH -> ou as in the reference's "book"), NG joins kk (velar), ZH joins CH
# (post-alveolar), Y joins ih (the glide of "ee"), W joins ou (rounded), HH joins kk (no lip
# or tongue-tip gesture, jaw slightly open like the velars).
OCULUS15_NAMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")
PHONEME_TO_OCULUS15: dict[str, str] = {
    "AA": "aa", "AE": "aa", "AH": "aa", "AO": "oh", "AW": "aa", "AY": "aa", "EH": "E", "ER": "RR",
    "EY": "E", "IH": "ih", "IY": "ih", "OW": "oh", "OY": "oh", "UH": "ou", "UW": "ou",
    "B": "PP", "M": "PP", "P": "PP", "F": "FF", "V": "FF", "TH": "TH", "DH": "TH",
    "T": "DD", "D": "DD", "K": "kk", "G": "kk", "NG": "kk", "HH": "kk",
    "CH": "CH", "JH": "CH", "SH": "CH", "ZH": "CH", "S": "SS", "Z": "SS",
    "N": "nn", "L": "nn", "R": "RR", "W": "ou", "Y": "ih", "SIL": "sil",
}
OCULUS15_GLIDES: dict[str, str] = {"AW": "ou", "AY": "ih", "EY": "ih", "OW": "ou", "OY": "ih"}
OCULUS15_SHAPES: dict[str, tuple[float, float, float, float, float]] = {
    "sil": (0.00, 0.20, 0.00, 0.30, 0.00),
    "PP": (0.00, 0.25, 0.00, 1.00, 0.00),
    "FF": (0.15, 0.30, 0.00, 0.00, 1.00),
    "TH": (0.20, 0.35, 0.00, 0.00, 0.00),  # tongue tip between the teeth: small gap
    "DD": (0.25, 0.45, 0.00, 0.00, 0.00),
    "kk": (0.30, 0.40, 0.00, 0.00, 0.00),
    "CH": (0.20, 0.00, 0.60, 0.00, 0.00),  # lips pushed forward (protruded), teeth close
    "SS": (0.12, 0.65, 0.00, 0.00, 0.00),  # teeth nearly together, corners back
    "nn": (0.25, 0.40, 0.00, 0.00, 0.00),
    "RR": (0.25, 0.10, 0.60, 0.00, 0.00),  # English r: rounded
    "aa": (1.00, 0.40, 0.00, 0.00, 0.00),
    "E": (0.55, 0.60, 0.00, 0.00, 0.00),
    "ih": (0.30, 0.80, 0.00, 0.00, 0.00),
    "oh": (0.55, 0.00, 0.70, 0.00, 0.00),
    "ou": (0.30, 0.00, 1.00, 0.00, 0.00),
}

# --- Microsoft Azure Speech, 22 viseme ids (0-21) --------------------------------------------
# Source: Azure AI Speech "Get facial position with viseme", table "Map phonemes to visemes"
# for en-US (IPA -> viseme id), which keeps the SAPI 5 SPVISEMES grouping (learn.microsoft.com,
# SAPI 5.4 SPVISEMES): 0 silence | 1 ae ax ah (ae, schwa, uh-as-in-"uncle") | 2 aa | 3 ao |
# 4 ey eh uh | 5 er | 6 y iy ih | 7 w uw | 8 ow | 9 aw | 10 oy | 11 ay | 12 h | 13 r | 14 l |
# 15 s z | 16 sh ch jh zh | 17 th dh | 18 f v | 19 d t n | 20 k g ng | 21 p b m.
# Azure has whole visemes for the diphthongs, so no glides here. Names are the ids as text.
AZURE22_NAMES = tuple(str(i) for i in range(22))
PHONEME_TO_AZURE22: dict[str, str] = {
    "AE": "1", "AH": "1", "AA": "2", "AO": "3", "EY": "4", "EH": "4", "UH": "4", "ER": "5",
    "Y": "6", "IY": "6", "IH": "6", "W": "7", "UW": "7", "OW": "8", "AW": "9", "OY": "10",
    "AY": "11", "HH": "12", "R": "13", "L": "14", "S": "15", "Z": "15",
    "SH": "16", "CH": "16", "JH": "16", "ZH": "16", "TH": "17", "DH": "17", "F": "18", "V": "18",
    "D": "19", "T": "19", "N": "19", "K": "20", "G": "20", "NG": "20",
    "P": "21", "B": "21", "M": "21", "SIL": "0",
}
AZURE22_SHAPES: dict[str, tuple[float, float, float, float, float]] = {
    "0": (0.00, 0.20, 0.00, 0.30, 0.00),   # silence
    "1": (0.60, 0.50, 0.00, 0.00, 0.00),   # ae, schwa, ah: open
    "2": (1.00, 0.40, 0.00, 0.00, 0.00),   # aa: wide open
    "3": (0.70, 0.10, 0.50, 0.00, 0.00),   # ao: open, rounded
    "4": (0.50, 0.45, 0.10, 0.00, 0.00),   # ey eh uh: mid open
    "5": (0.40, 0.10, 0.50, 0.00, 0.00),   # er: r-coloured, rounded
    "6": (0.25, 0.80, 0.00, 0.00, 0.00),   # y iy ih: spread, nearly closed
    "7": (0.25, 0.00, 1.00, 0.00, 0.00),   # w uw: puckered
    "8": (0.50, 0.00, 0.80, 0.00, 0.00),   # ow: rounded
    "9": (0.80, 0.20, 0.40, 0.00, 0.00),   # aw: open going round
    "10": (0.55, 0.30, 0.50, 0.00, 0.00),  # oy: rounded going spread
    "11": (0.85, 0.50, 0.00, 0.00, 0.00),  # ay: open going spread
    "12": (0.35, 0.40, 0.00, 0.00, 0.00),  # h: relaxed, open
    "13": (0.25, 0.10, 0.60, 0.00, 0.00),  # r: rounded
    "14": (0.40, 0.40, 0.00, 0.00, 0.00),  # l: open, tongue up
    "15": (0.12, 0.65, 0.00, 0.00, 0.00),  # s z: teeth together, spread
    "16": (0.20, 0.00, 0.60, 0.00, 0.00),  # sh ch jh zh: protruded
    "17": (0.20, 0.35, 0.00, 0.00, 0.00),  # th dh: tongue between the teeth
    "18": (0.15, 0.30, 0.00, 0.00, 1.00),  # f v: upper teeth on the lower lip
    "19": (0.25, 0.45, 0.00, 0.00, 0.00),  # d t n
    "20": (0.30, 0.40, 0.00, 0.00, 0.00),  # k g ng
    "21": (0.00, 0.25, 0.00, 1.00, 0.00),  # p b m: pressed closed
}


@dataclass(frozen=True)
class VisemeSet:
    """One viseme vocabulary: its names, the phoneme table, glides and mouth parameters.

    names:  viseme names in weight-column order; ``rest`` is the pause shape and ``closed``
            the bilabial closure shape (lips pressed: P, B, M).
    table:  ARPAbet (39 CMU phones) + "SIL" -> viseme name.
    glides: diphthong -> the viseme it glides to over its last 40%.
    breath: the open shape an audible in-breath (label BREATH) moves the rest pose toward.
    shapes: viseme name -> 5 mouth parameters (order :data:`MOUTH_PARAMS`, in [0, 1]).
    """

    key: str
    title: str
    names: tuple[str, ...]
    rest: str
    closed: str
    table: dict
    glides: dict
    shapes: dict
    source: str
    alternatives: dict = field(default_factory=dict)
    breath: str = ""

    def index(self, name: str) -> int:
        return self.names.index(name)

    def shape_matrix(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(V, 5) mouth parameters of each viseme in ``names`` order."""
        return torch.tensor([self.shapes[n] for n in self.names], dtype=dtype, device=device)


VISEME_SETS: dict[str, VisemeSet] = {
    "rhubarb": VisemeSet(
        "rhubarb", "Rhubarb / Preston Blair (A-H, X)", ("A", "B", "C", "D", "E", "F", "G", "H", "X"),
        "X", "A", PHONEME_TO_RHUBARB, RHUBARB_GLIDES, RHUBARB_SHAPES,
        "Rhubarb Lip Sync README, 'Mouth shapes' (Hanna-Barbera / Preston Blair)", RHUBARB_ALTERNATIVES, "C"),
    "oculus15": VisemeSet(
        "oculus15", "Meta / Oculus OVR Lipsync (15)", OCULUS15_NAMES, "sil", "PP",
        PHONEME_TO_OCULUS15, OCULUS15_GLIDES, OCULUS15_SHAPES,
        "Oculus Lipsync Viseme Reference / OpenXR XR_META_face_tracking_visemes", breath="E"),
    "azure22": VisemeSet(
        "azure22", "Microsoft Azure Speech viseme ids (0-21)", AZURE22_NAMES, "0", "21",
        PHONEME_TO_AZURE22, {}, AZURE22_SHAPES,
        "Azure AI Speech 'Map phonemes to visemes' (en-US) = SAPI 5 SPVISEMES", breath="1"),
}
"""The viseme sets by key: ``rhubarb``, ``oculus15``, ``azure22``."""

PAUSE_LABELS = frozenset({"SIL", "SP", "SPN", "NSN", "NOISE", "BREATH", "COUGH", "SMACK", "LAUGH",
                          "GARBAGE", "<SIL>", "<S>", "</S>", ""})
"""Labels treated as a pause (rest shape): silence and recogniser noise/filler tokens.
Pocketsphinx writes its fillers as ``+NSN+``, ``+SPN+``, ``+BREATH+``...; any ``+...+`` label
counts as a pause too."""


def normalize_label(label: str) -> str:
    """ARPAbet label as the tables key it: upper case, stress digits removed, fillers -> SIL."""
    s = str(label).strip().upper()
    if s.startswith("+") and s.endswith("+"):
        return "SIL"
    s = s.rstrip("012")
    return "SIL" if s in PAUSE_LABELS else s


def get_set(viseme_set: "str | VisemeSet", who: str = "MapVisemes") -> VisemeSet:
    if isinstance(viseme_set, VisemeSet):
        return viseme_set
    if viseme_set not in VISEME_SETS:
        raise InputError(f"{who}: unknown viseme_set {viseme_set!r}. Choose one of {', '.join(VISEME_SETS)}.")
    return VISEME_SETS[viseme_set]
