"""Phonemes -> visemes: mapping tables and the per-frame mouth track.

Tables map ARPAbet phonemes (the 39 phones of the CMU dictionary, no stress digits) plus
``"SIL"`` to the shapes of a viseme set. Each table below names where its phoneme grouping
comes from; the grouping was read from the source's documentation and written out here.

Public API:

* :data:`PHONEME_TO_RHUBARB`, :data:`VISEME_SETS` (``rhubarb``, ``oculus15``, ``azure22``),
  each a :class:`VisemeSet` with its table, glides, alternatives and mouth parameters;
* :func:`map_phonemes` (PhonemeTrack -> VisemeTrack at the video fps, with the animation rules);
* :func:`to_rhubarb_json`, :func:`to_tsv` (Rhubarb Lip Sync's export formats);
* :func:`preview` (timeline picture, ComfyUI IMAGE).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import InputError
from .types import MOUTH_PARAMS, PhonemeTrack, VisemeTrack

log = logging.getLogger("comfyui_lipsync")

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


# --- timeline building (segments in seconds; a few thousand per 10 minutes: plain Python) -----

GLIDE_SPLIT = 0.6
"""A diphthong shows its first shape for this fraction of its length, then the glide target."""


def _phoneme_segments(track: PhonemeTrack, vs: VisemeSet, end_time: float, who: str,
                      bridge_s: float = 0.0):
    """Phonemes -> contiguous segments [(start, end, viseme index or -1 for pause)] covering
    [0, end_time]; gaps between phonemes are pauses. Consonants with alternative shapes
    (``vs.alternatives``) take the shape of what follows when it is one of them (see
    :data:`RHUBARB_ALTERNATIVES`); a pause of ``bridge_s`` or more breaks that look-ahead."""
    unknown = set()
    items = []  # (start, end, label) clipped, in time order, no overlaps
    t = 0.0
    for p in sorted(track.phonemes, key=lambda p: (float(p.start), float(p.end))):
        s, e = float(p.start), float(p.end)
        if not (math.isfinite(s) and math.isfinite(e)):
            raise InputError(f"{who}: phoneme {p.label!r} has a non-finite time ({p.start}, {p.end}).")
        if e < s:
            raise InputError(f"{who}: phoneme {p.label!r} ends before it starts ({s:.3f} > {e:.3f} s).")
        lab = normalize_label(p.label)
        if lab != "SIL" and lab not in vs.table:
            unknown.add(str(p.label))
            continue
        s, e = max(s, t), min(e, end_time)
        if e <= s:
            continue
        items.append((s, e, lab))
        t = e
    if unknown:
        raise InputError(f"{who}: unknown phoneme labels {sorted(unknown)[:10]}. Labels must be ARPAbet "
                         f"(e.g. AA, P, SH; stress digits allowed) or SIL.")
    # first shape of each phone, chosen right to left so clusters follow the sound after them
    first: list[int] = [-1] * len(items)
    follow, follow_at = -1, math.inf  # shape of the next sound and where it starts
    for i in range(len(items) - 1, -1, -1):
        s, e, lab = items[i]
        if lab == "SIL":  # pauses do not move follow_at: the gap below spans all of them
            continue
        v = vs.index(vs.table[lab])
        alts = vs.alternatives.get(lab)
        if alts and follow >= 0 and vs.names[follow] in alts and follow_at - e < bridge_s:
            v = follow
        first[i] = v
        follow, follow_at = v, s
    segs: list[list] = []
    t = 0.0
    for (s, e, lab), v in zip(items, first):
        if s > t:
            segs.append([t, s, -1])
        glide = vs.glides.get(lab) if v >= 0 else None
        if glide is not None:
            mid = s + GLIDE_SPLIT * (e - s)
            segs.append([s, mid, v])
            segs.append([mid, e, vs.index(glide)])
        else:
            segs.append([s, e, v])
        t = e
    if t < end_time:
        segs.append([t, end_time, -1])
    return segs


def _merge(segs):
    out = []
    for s in segs:
        if out and out[-1][2] == s[2]:
            out[-1][1] = s[1]
        elif s[1] > s[0] or not out:
            out.append(list(s))
    return out


def _bridge_pauses(segs, bridge_s: float):
    """Pauses shorter than ``bridge_s`` between two spoken segments vanish: the shape before
    holds to the middle of the pause, the shape after starts there."""
    out = []
    for i, s in enumerate(segs):
        is_inner = 0 < i < len(segs) - 1
        if (s[2] == -1 and is_inner and (s[1] - s[0]) < bridge_s
                and segs[i - 1][2] != -1 and segs[i + 1][2] != -1):
            mid = 0.5 * (s[0] + s[1])
            out[-1][1] = mid
            segs[i + 1] = [mid, segs[i + 1][1], segs[i + 1][2]]
            continue
        out.append(list(s))
    return out


def _anticipate(bounds: np.ndarray, vis: np.ndarray, closed: int, lead_s: float) -> np.ndarray:
    """Each shape starts ``lead_s`` before its sound, except that a bilabial closure is held
    until its release (the acoustic end of P/B/M). bounds: (n+1,) -> new (n+1,)."""
    b = bounds.copy()
    if lead_s > 0 and len(b) > 2:
        inner = b[1:-1] - lead_s
        keep = vis[:-1] == closed  # boundary after a closure stays at the release
        b[1:-1] = np.where(keep, b[1:-1], inner)
        b[1:-1] = np.clip(b[1:-1], b[0], b[-1])
        # a closure held to its release wins over the early start of the shapes after it
        b = np.maximum.accumulate(b)
    return b


def _enforce_hold(bounds: np.ndarray, holds: np.ndarray, max_delay: float,
                  closure: np.ndarray | None = None) -> np.ndarray:
    """Stretch segments shorter than their hold without letting the track drift late.

    A short segment first takes time from the slack of the segment before it (moving its
    start earlier: more anticipation, never a lag), at most half its need while the segment
    after has slack too; then it pushes its end later, but no boundary ever moves more than
    ``max_delay`` after where the sound put it, so a run of short phones cannot delay the
    track; what is still missing is taken from the previous segment's remaining slack.
    Closures (``closure[k]`` True) take from the previous segment first and may push as far
    as needed: the lips must show closed in at least one frame. bounds (n+1,), holds (n,).
    """
    b = bounds.astype(np.float64).copy()
    orig = b.copy()
    n = len(holds)
    closure = np.zeros(n, dtype=bool) if closure is None else closure
    eps = 1e-12
    for k in range(n):
        need = holds[k] - (b[k + 1] - b[k])
        if need <= eps:
            continue
        prev_slack = max(0.0, (b[k] - b[k - 1]) - holds[k - 1]) if k > 0 else 0.0
        next_slack = max(0.0, (b[k + 2] - b[k + 1]) - holds[k + 1]) if k + 1 < n else 0.0
        first_share = need if (closure[k] or next_slack <= 0 or k + 1 >= n) else 0.5 * need
        take = min(prev_slack, first_share)
        b[k] -= take
        need -= take
        prev_slack -= take
        if need > eps and k + 1 < n:
            cap = b[n] if closure[k] else max(b[k + 1], min(orig[k + 1] + max_delay, b[n]))
            new = min(b[k + 1] + need, cap)
            need -= new - b[k + 1]
            b[k + 1] = new
            j = k + 2
            while j < n and b[j] < b[k + 1]:
                b[j] = b[k + 1]
                j += 1
        if need > eps and k > 0:  # still short: whatever slack the previous segment has left
            take = min(prev_slack, need)
            if closure[k]:  # a closure may eat into its neighbour's hold, not past its start
                take = min(need, b[k] - b[k - 1])
            b[k] -= take
    return b


def _timeline(track, vs, fps, num_frames, anticipation_ms, min_hold_ms, bridge_pause_ms, who):
    """Final segment bounds (n+1,) float64 and viseme index per segment (n,) (rest = real index)."""
    end_time = num_frames / fps
    segs = _phoneme_segments(track, vs, end_time, who, bridge_pause_ms / 1000.0)
    segs = _merge(segs)
    segs = _bridge_pauses(segs, bridge_pause_ms / 1000.0)
    rest = vs.index(vs.rest)
    for s in segs:
        if s[2] == -1:
            s[2] = rest
    segs = _merge(segs)
    bounds = np.array([s[0] for s in segs] + [segs[-1][1]], dtype=np.float64)
    bounds[0], bounds[-1] = 0.0, end_time
    vis = np.array([s[2] for s in segs], dtype=np.int64)
    closed = vs.index(vs.closed)
    bounds = _anticipate(bounds, vis, closed, anticipation_ms / 1000.0)
    hold = min_hold_ms / 1000.0
    holds = np.full(len(vis), hold)
    is_closure = vis == closed
    holds[is_closure] = max(hold, 1.0 / fps)  # a closure shows in >= 1 frame
    for edge in (0, len(vis) - 1):  # rest cut by the clip's start or end needs no hold
        if vis[edge] == rest:
            holds[edge] = 0.0
    bounds = _enforce_hold(bounds, holds, max_delay=0.5 * hold, closure=is_closure)
    keep = np.diff(bounds) > 1e-9
    if not keep.all():  # zero-length leftovers (a phone swallowed by a closure)
        vis = vis[keep]
        bounds = np.concatenate([bounds[:-1][keep], bounds[-1:]])
    return bounds, vis


# --- frames (vectorised over T) ---------------------------------------------------------------

def _box_weights(bounds: torch.Tensor, vis: torch.Tensor, V: int, t: torch.Tensor, width: float) -> torch.Tensor:
    """Weights (T, V): the share of each viseme inside the window [t - width/2, t + width/2]
    (clipped to the clip), computed exactly from the piecewise-constant timeline through its
    cumulative time per viseme. width 0 -> the viseme at t (one-hot)."""
    n = vis.shape[0]
    onehot = torch.nn.functional.one_hot(vis, V).to(torch.float64)  # (n, V)
    lengths = (bounds[1:] - bounds[:-1]).unsqueeze(1)
    cum = torch.cat([torch.zeros(1, V, dtype=torch.float64), torch.cumsum(onehot * lengths, 0)], 0)

    def seg_of(x):
        return torch.searchsorted(bounds[1:-1].contiguous(), x.contiguous(), right=True).clamp_(0, n - 1)

    if width <= 1e-9:
        return onehot[seg_of(t)]

    def cumulative(x):
        k = seg_of(x)
        return cum[k] + onehot[k] * (x - bounds[k]).unsqueeze(1)

    lo = (t - width / 2).clamp(bounds[0], bounds[-1])
    hi = (t + width / 2).clamp(bounds[0], bounds[-1])
    span = (hi - lo).unsqueeze(1)
    w = (cumulative(hi) - cumulative(lo)) / span.clamp_min(1e-12)
    return torch.where(span > 1e-12, w, onehot[seg_of(t)])


def _gauss_smooth(x: torch.Tensor, sigma_frames: float) -> torch.Tensor:
    """Zero-phase Gaussian filter along time of x (T, C); edges replicate. Rows keep their sum."""
    if sigma_frames < 0.25 or x.shape[0] < 2:
        return x
    r = int(math.ceil(3 * sigma_frames))
    k = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (k / sigma_frames) ** 2)
    k = (k / k.sum()).view(1, 1, -1).repeat(x.shape[1], 1, 1)
    y = x.T.unsqueeze(0)  # (1, C, T)
    y = torch.nn.functional.pad(y, (r, r), mode="replicate")
    return torch.nn.functional.conv1d(y, k, groups=x.shape[1])[0].T


ANTICIPATION_MS = 0.0
"""Default lead of the shapes over the sound. Measured on the 7 GRID clips (bench_visemes.py
--grid --detector mediapipe; transcript alignment, no breaths marked; jaw_open against the
filmed face-mesh inner-lip gap): r = 0.639 at 0 ms, 0.620 at 20 ms, 0.579 at 40 ms (with the
breaths marked, 0.711 at 0 ms; recognised phonemes with breaths: 0.676 / 0.645 / 0.602); the
filmed mouth one frame later than the track follows it almost as well (0.623) and one frame
earlier clearly worse (0.558): filmed lips do not lead the aligned phoneme timeline (if
anything they trail it), so a lead puts the mouth early. Frames sample the timeline at their
centre, half a frame after their timestamp. The judge agrees: GRID clips driven by another
clip's audio (bench_e2e.py) score offset 0 in SyncScore on 7/7 with the transcript at 0 ms,
5/7 at 20 ms, 3/7 at 30 ms (the generated mouth reads early).
Earlier sessions used 20 ms ("a mouth slightly early is accepted better than late"); the
animators' one-frame lead (40 ms) stays one widget change away."""

BREATH_OPEN = 0.35
"""Default share of the set's open shape mixed into the rest pose during an audible in-breath
(ExtractPhonemes' BREATH label): jaw_open 0.19 with the Rhubarb set (C is 0.55). Filmed GRID
speakers part their lips to about half their vowel opening as they breathe in before the line
(face-mesh lip gap 0.05-0.09 against 0.13-0.15 on the vowels, closed 0.02); the value is kept
lower than that because a breath mistaken from room noise should not read as speech.
bench_e2e.py (GRID, each clip driven by the next one's audio) gives the figures."""

BREATH_LABELS = frozenset({"BREATH", "+BREATH+", "<BREATH>"})
"""Phoneme labels of an audible breath (ExtractPhonemes writes BREATH; pocketsphinx fillers)."""

SMOOTHING_MAX_MS = 60.0
"""smoothing = 1 is a Gaussian of this sigma (ms); smoothing = s scales it linearly."""


def _check_args(track, fps, num_frames, anticipation_ms, min_hold_ms, blend_ms, strength,
                smoothing, bridge_pause_ms, who, breath_open):
    if not isinstance(track, PhonemeTrack):
        raise InputError(f"{who}: phonemes must be a PhonemeTrack (from ExtractPhonemes), got {type(track).__name__}.")
    if len(track.phonemes) == 0:
        raise InputError(f"{who}: the phoneme track is empty (0 phonemes, {track.duration:.2f} s). "
                         "Check ExtractPhonemes' preview; the audio may be silent or the transcript missing.")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 1000):
        raise InputError(f"{who}: fps must be a positive frame rate up to 1000, got {fps}. "
                         "Set the video's fps (e.g. 25), or connect a driver.")
    if not (isinstance(num_frames, (int, np.integer)) and num_frames >= 1):
        raise InputError(f"{who}: frame count must be a whole number >= 1, got {num_frames}. "
                         "Set frame_count, or 0 to use the driver's or the phonemes' length.")
    for name, val, lo, hi in (("anticipation_ms", anticipation_ms, 0, 500), ("min_hold_ms", min_hold_ms, 0, 1000),
                              ("blend_ms", blend_ms, 0, 1000), ("strength", strength, 0, 1),
                              ("smoothing", smoothing, 0, 1), ("bridge_pause_ms", bridge_pause_ms, 0, 5000),
                              ("breath_open", breath_open, 0, 1)):
        if not (isinstance(val, (int, float)) and math.isfinite(val) and lo <= val <= hi):
            raise InputError(f"{who}: {name} must be between {lo} and {hi}, got {val}.")


def map_phonemes(track: PhonemeTrack, fps: float, num_frames: int | None = None,
                 viseme_set: "str | VisemeSet" = "rhubarb", anticipation_ms: float = ANTICIPATION_MS,
                 min_hold_ms: float = 60.0, blend_ms: float = 60.0, strength: float = 1.0,
                 smoothing: float = 0.5, bridge_pause_ms: float = 150.0, breath_open: float = BREATH_OPEN,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 who: str = "MapVisemes") -> VisemeTrack:
    """Timed phonemes -> a per-frame mouth track at ``fps``.

    Frame ``i`` shows time ``(i + 0.5) / fps`` (its centre). The rules, in order:

    1. each phoneme becomes its viseme; diphthongs glide to a second viseme over their last
       40%; silence, fillers and gaps become the rest shape;
    2. pauses shorter than ``bridge_pause_ms`` between speech are bridged (no return to rest);
    3. anticipation: every shape starts ``anticipation_ms`` before its sound, but a P/B/M
       closure is held until its release, so the lips open when the sound does;
    4. minimum hold: shapes shorter than ``min_hold_ms`` are stretched into their neighbours,
       preferably earlier; no boundary moves more than ``min_hold_ms / 2`` later than its
       sound, so a run of fast phones cannot make the track lag; a closure always lasts at
       least one frame;
    5. blending: each frame's weights are the share of each shape in a ``blend_ms`` window
       around it (linear cross-fades instead of cuts), then a zero-phase Gaussian of sigma
       ``smoothing * 60 ms``; rows sum to 1;
    6. breaths: where a pause is an audible in-breath (label BREATH, see
       :func:`.phonemes.mark_breaths`), ``breath_open`` of the rest weight moves to the set's
       open shape (``VisemeSet.breath``), cross-faded like the shapes: the lips part a little
       before the line. The rest shape stays the dominant one (cues are unchanged);
    7. frames whose centre lies in a closure are fully closed (lip_close 1, jaw 0);
    8. params = weights @ shapes; ``strength`` s mixes toward rest:
       ``w = s * w + (1 - s) * rest`` (so params move linearly toward the rest pose).

    track: PhonemeTrack; num_frames: T (default ``round(track.duration * fps)``).
    Returns VisemeTrack with weights (T, V) and params (T, 5) in [0, 1] on ``device``
    (default CPU), ``dtype``; cues are the dominant shape per run of frames BEFORE strength.
    Deterministic; identical on every device (computed in float64 on the CPU, then moved).
    """
    vs = get_set(viseme_set, who)
    if isinstance(track, PhonemeTrack) and num_frames is None:
        num_frames = max(1, int(round(float(track.duration) * float(fps)))) if fps and fps > 0 else 0
    _check_args(track, fps, num_frames, anticipation_ms, min_hold_ms, blend_ms, strength,
                smoothing, bridge_pause_ms, who, breath_open)
    fps = float(fps)
    num_frames = int(num_frames)
    V = len(vs.names)
    bounds_np, vis_np = _timeline(track, vs, fps, num_frames, anticipation_ms, min_hold_ms,
                                  bridge_pause_ms, who)
    bounds = torch.from_numpy(bounds_np)
    vis = torch.from_numpy(vis_np)
    t = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps
    w = _box_weights(bounds, vis, V, t, blend_ms / 1000.0)
    w = _gauss_smooth(w, smoothing * SMOOTHING_MAX_MS / 1000.0 * fps)
    if breath_open > 0 and vs.breath:
        share = _breath_share(track, fps, num_frames, blend_ms, smoothing)
        if share is not None:
            rest_i, open_i = vs.index(vs.rest), vs.index(vs.breath)
            moved = w[:, rest_i] * (float(breath_open) * share)
            w[:, rest_i] -= moved
            w[:, open_i] += moved
    # closures: hard, whatever the blending did around them
    seg = torch.searchsorted(bounds[1:-1].contiguous(), t, right=True).clamp_(0, len(vis_np) - 1)
    closed = vs.index(vs.closed)
    is_closed = vis[seg] == closed
    w[is_closed] = torch.nn.functional.one_hot(torch.tensor(closed), V).to(w)
    w = w / w.sum(1, keepdim=True)
    cues = _cues(w, vs.names, fps)
    rest = torch.nn.functional.one_hot(torch.tensor(vs.index(vs.rest)), V).to(w)
    w = strength * w + (1.0 - strength) * rest
    params = (w @ vs.shape_matrix(dtype=torch.float64)).clamp_(0.0, 1.0)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return VisemeTrack(weights=w.to(device=dev, dtype=dtype), params=params.to(device=dev, dtype=dtype),
                       names=vs.names, viseme_set=vs.key, fps=fps, cues=cues)


def _breath_share(track: PhonemeTrack, fps: float, num_frames: int, blend_ms: float,
                  smoothing: float) -> torch.Tensor | None:
    """(T,) float64 share of each frame's blend window that lies in a BREATH phoneme, smoothed
    like the weights; None when the track has no breath."""
    end_time = num_frames / fps
    spans = sorted((max(float(p.start), 0.0), min(float(p.end), end_time)) for p in track.phonemes
                   if str(p.label).strip().upper() in BREATH_LABELS)
    spans = [(s, e) for s, e in spans if e > s]
    if not spans:
        return None
    bounds, vis, t0 = [0.0], [], 0.0
    for s, e in spans:
        s, e = max(s, t0), max(e, t0)
        if e <= s:
            continue
        if s > t0:
            vis.append(0)
            bounds.append(s)
        vis.append(1)
        bounds.append(e)
        t0 = e
    if t0 < end_time:
        vis.append(0)
        bounds.append(end_time)
    t = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps
    w = _box_weights(torch.tensor(bounds, dtype=torch.float64), torch.tensor(vis), 2, t, blend_ms / 1000.0)
    return _gauss_smooth(w, smoothing * SMOOTHING_MAX_MS / 1000.0 * fps)[:, 1]


def _cues(w: torch.Tensor, names, fps: float) -> tuple[tuple[float, float, str], ...]:
    """Runs of the dominant viseme -> (start, end, name) in seconds at frame boundaries."""
    top = torch.argmax(w, dim=1).numpy()
    change = np.flatnonzero(np.diff(top)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(top)]])
    vals = top[starts].tolist()
    return tuple((s / fps, e / fps, names[v]) for s, e, v in zip(starts.tolist(), ends.tolist(), vals))


# --- export -----------------------------------------------------------------------------------

def _decimals(times) -> int:
    """Rhubarb writes times with 2 decimals; use 3 where 2 would merge distinct boundaries."""
    r2 = [round(x, 2) for x in times]
    return 2 if all(b > a for a, b in zip(r2, r2[1:])) else 3


def _rest_name(track: VisemeTrack) -> str:
    vs = VISEME_SETS.get(track.viseme_set)
    return vs.rest if vs is not None and vs.rest in track.names else track.names[0]


def _cue_values(track: VisemeTrack):
    """The track's cues, or (when it carries none) the dominant shape per run of frames."""
    cues = list(track.cues)
    if not cues:
        cues = list(_cues(track.weights.detach().double().cpu(), track.names, track.fps)) if track.num_frames \
            else [(0.0, 0.0, _rest_name(track))]
    return cues, track.num_frames / track.fps


def to_rhubarb_json(track: VisemeTrack, sound_file: str = "") -> str:
    """Rhubarb Lip Sync's JSON export: ``{"metadata": {"soundFile", "duration"},
    "mouthCues": [{"start", "end", "value"}, ...]}`` laid out as Rhubarb does (one cue per
    line). Values are the set's own viseme names (A-H/X for Rhubarb)."""
    cues, duration = _cue_values(track)
    d = _decimals([c[0] for c in cues] + [duration])
    lines = ["{", '  "metadata": {', f'    "soundFile": {json.dumps(str(sound_file))},',
             f'    "duration": {duration:.{d}f}', "  },", '  "mouthCues": [']
    body = [f'    {{ "start": {s:.{d}f}, "end": {e:.{d}f}, "value": {json.dumps(v)} }}' for s, e, v in cues]
    lines.append(",\n".join(body))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def to_tsv(track: VisemeTrack) -> str:
    """Rhubarb Lip Sync's TSV export: one ``start<TAB>value`` line per cue, then the end time
    with the rest shape (X for Rhubarb)."""
    cues, duration = _cue_values(track)
    rest = _rest_name(track)
    d = _decimals([c[0] for c in cues] + [duration])
    rows = [f"{s:.{d}f}\t{v}" for s, _, v in cues] + [f"{duration:.{d}f}\t{rest}"]
    return "\n".join(rows) + "\n"


# --- preview ----------------------------------------------------------------------------------

PARAM_COLORS = {"jaw_open": (214, 39, 40), "lip_spread": (31, 119, 180), "lip_round": (44, 160, 44),
                "lip_close": (0, 0, 0), "teeth_on_lip": (148, 103, 189)}


def viseme_colors(names) -> dict[str, tuple[int, int, int]]:
    """A stable colour per viseme name (by position in the set; rest shapes light grey)."""
    import colorsys

    from .plot import PALETTE

    out = {}
    for i, n in enumerate(names):
        if len(names) <= len(PALETTE):
            out[n] = PALETTE[i]
        else:  # many visemes: spread hues, alternate lightness so neighbours differ
            r, g, b = colorsys.hls_to_rgb(i / len(names), 0.55 if i % 2 else 0.7, 0.65)
            out[n] = (int(r * 255), int(g * 255), int(b * 255))
    for vs in VISEME_SETS.values():
        if vs.rest in out and tuple(names) == vs.names:
            out[vs.rest] = (215, 215, 215)
    return out


def preview(track: VisemeTrack, waveform16k: torch.Tensor | None = None,
            phonemes: PhonemeTrack | None = None, width: int = 1024, sample_rate: int = 16000) -> torch.Tensor:
    """Picture of a viseme track: the shapes as coloured, labelled segments on a timeline over
    the waveform (and the phonemes, when given), and the five mouth parameters as curves.

    waveform16k: (N,) mono at ``sample_rate``; returns IMAGE float32 [1, H, W, 3] on the CPU.
    """
    from .plot import Canvas

    duration = track.num_frames / track.fps
    has_ph = phonemes is not None and len(phonemes.phonemes) > 0
    height = 400 + (40 if has_ph else 0)
    cv = Canvas(width, height)
    heights = [3.0] + ([0.8] if has_ph else []) + [3.0]
    titles = [f"shapes ({track.viseme_set}) over the audio"] + (["phonemes"] if has_ph else []) + \
             ["mouth parameters"]
    axes = cv.rows(len(heights), heights=heights, xlim=(0.0, duration), xlabel="time (s)", titles=titles)
    top = axes[0].set_ylim(-1.0, 1.0)
    colors = viseme_colors(track.names)
    top.show_yticks = False
    top.segments(track.cues, colors=colors, alpha=0.45, labels=False)
    if waveform16k is not None:
        w = waveform16k.detach().float().reshape(-1).cpu()
        if w.numel() > 0:
            peak = float(w.abs().max()) or 1.0
            block = max(1, w.numel() // (4 * width))  # long clips: min/max per block first
            n = (w.numel() // block) * block
            if block > 1 and n > 0:
                wb = w[:n].view(-1, block)
                y = torch.stack([wb.amin(1), wb.amax(1)], 1).reshape(-1)
                t = (torch.arange(y.numel(), dtype=torch.float64) // 2 + 0.5) * block / sample_rate
            else:
                y, t = w, torch.arange(w.numel(), dtype=torch.float64) / sample_rate
            top.envelope(t.numpy(), (y / peak * 0.8).numpy(), color=(70, 70, 70))
    if track.cues:  # shape names in a strip at the top, above the waveform, where they fit
        edges = top.px([c[0] for c in track.cues] + [track.cues[-1][1]])
        wide = np.flatnonzero(np.diff(edges) >= 8)
        for i in wide.tolist():
            s, e, name = track.cues[i]
            if edges[i + 1] - edges[i] >= cv.text_size(name)[0] + 2:
                top.text(0.5 * (s + e), 0.9, name, anchor="mm")
    if has_ph:
        axes[1].show_yticks = False
        axes[1].set_ylim(0, 1)
        spans = [(float(p.start), float(p.end), normalize_label(p.label)) for p in phonemes.phonemes]
        axes[1].segments(spans, colors={"SIL": (235, 235, 235)}, alpha=0.5, outline=(255, 255, 255))
    bottom = axes[-1].set_ylim(0.0, 1.05)
    t = (torch.arange(track.num_frames, dtype=torch.float64) + 0.5) / track.fps
    params = track.params.detach().float().cpu()
    for j, name in enumerate(MOUTH_PARAMS):
        bottom.line(t.numpy(), params[:, j].numpy(), color=PARAM_COLORS[name], width=2 if j == 0 else 1,
                    label=name)
    bottom.legend("upper right")
    return cv.to_image()
