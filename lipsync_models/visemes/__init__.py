"""Phonemes -> visemes: mapping tables and the per-frame mouth track.

Tables map ARPAbet phonemes (the 39 phones of the CMU dictionary, no stress digits) plus
``"SIL"`` to the shapes of a viseme set. Each table names where its phoneme grouping comes from;
the grouping was read from the source's documentation and written out here.

Public API:

* :data:`PHONEME_TO_RHUBARB`, :data:`VISEME_SETS` (``rhubarb``, ``oculus15``, ``azure22``),
  each a :class:`VisemeSet` with its table, glides, alternatives and mouth parameters;
* :func:`map_phonemes` (PhonemeTrack -> VisemeTrack at the video fps, with the animation rules);
* :func:`to_rhubarb_json`, :func:`to_tsv` (Rhubarb Lip Sync's export formats);
* :func:`preview` (timeline picture, ComfyUI IMAGE).

One concern per module: :mod:`.tables` (sets and tables), :mod:`.timeline` (the rules on
segments in seconds), :mod:`.frames` (the per-frame tensor ops), :mod:`.mapping`
(:func:`map_phonemes`), :mod:`.export`, :mod:`.picture` (:func:`preview`). The fitted defaults
:data:`ANTICIPATION_MS` and :data:`BREATH_OPEN` live in :mod:`..calibration`.
"""

from .export import to_rhubarb_json, to_tsv
from .frames import BREATH_LABELS, SMOOTHING_MAX_MS
from .mapping import ANTICIPATION_MS, BREATH_OPEN, map_phonemes
from .picture import PARAM_COLORS, preview, viseme_colors
from .tables import (ARPABET, AZURE22_NAMES, AZURE22_SHAPES, OCULUS15_GLIDES, OCULUS15_NAMES, OCULUS15_SHAPES,
                     PAUSE_LABELS, PHONEME_TO_AZURE22, PHONEME_TO_OCULUS15, PHONEME_TO_RHUBARB,
                     RHUBARB_ALTERNATIVES, RHUBARB_GLIDES, RHUBARB_SHAPES, VISEME_SETS, VisemeSet, get_set,
                     normalize_label)
from .timeline import GLIDE_SPLIT

__all__ = [
    "ANTICIPATION_MS", "ARPABET", "AZURE22_NAMES", "AZURE22_SHAPES", "BREATH_LABELS", "BREATH_OPEN", "GLIDE_SPLIT",
    "OCULUS15_GLIDES", "OCULUS15_NAMES", "OCULUS15_SHAPES", "PARAM_COLORS", "PAUSE_LABELS", "PHONEME_TO_AZURE22",
    "PHONEME_TO_OCULUS15", "PHONEME_TO_RHUBARB", "RHUBARB_ALTERNATIVES", "RHUBARB_GLIDES", "RHUBARB_SHAPES",
    "SMOOTHING_MAX_MS", "VISEME_SETS", "VisemeSet", "get_set", "map_phonemes", "normalize_label", "preview",
    "to_rhubarb_json", "to_tsv", "viseme_colors",
]
