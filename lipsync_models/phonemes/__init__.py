"""Timed phonemes from 16 kHz speech: recognition, forced alignment, or a model-free classifier.

Backends (all return a :class:`~.types.PhonemeTrack` covering ``[0, duration]``):

* :func:`recognize` - pocketsphinx phone recognition (allphone search with the phone language
  model shipped in the ``pocketsphinx`` wheel). English acoustic model; no transcript needed.
* :func:`align` - pocketsphinx forced alignment of a typed transcript (word and phone timings).
  Words the dictionary lacks get pronunciations from :mod:`.g2p`.
* :func:`acoustic` - no model at all: 10 ms frames classified into mouth classes from energy,
  spectral shape, voicing and LPC formants. Works for any language, singing or noises, but
  only knows six mouth classes (see :data:`ACOUSTIC_CLASSES`).
* :func:`extract` - picks one by name; ``"auto"`` aligns when a transcript is given, else
  recognises. It never falls back to another backend on its own.

Labels are ARPAbet without stress digits; silence and noise are ``"SIL"``. :func:`extract` then
marks audible in-breaths just before speech as ``"BREATH"`` (:func:`mark_breaths`): filmed
speakers part their lips to breathe in before a line, and MapVisemes opens the mouth a little
there.

Confidence (pocketsphinx backends): the segment's acoustic log-likelihood relative to the best
senone of each frame, averaged over its frames and exponentiated: ``exp(mean_t(log p(x_t |
phone) - log p(x_t | best senone)))`` in [0, 1]; 1 means the phone's model explains its frames as
well as the best model of all, 0.1 means ten times worse per frame. It is a relative fit, not a
calibrated posterior (pocketsphinx's allphone search has no lattice to give one).

Audio goes to pocketsphinx as 16-bit PCM at 16 kHz; its decoders are cached per process
(:mod:`.sphinx`).

One concern per module: :mod:`.common` (waveform checks, 10 ms levels), :mod:`.sphinx` (decoder
cache, labels, confidence), :mod:`.recognition`, :mod:`.alignment`, :mod:`.classifier` (the
acoustic backend), :mod:`.breaths`, :mod:`.pipeline` (:func:`extract`, :func:`report`). The names
below are the package's public face; tests that patch a module constant patch it in its module
(e.g. ``phonemes.alignment.ALIGN_CHUNK_S``).
"""

from .alignment import ALIGN_CHUNK_S, ALIGN_GUARD_S, align, transcript_words
from .breaths import BREATH_DIGITAL_SILENCE_DBFS, mark_breaths
from .classifier import (ACOUSTIC_CHUNK_S, ACOUSTIC_CLASSES, CLOSURE_BELOW_DB, CLOSURE_DIP_DB, FRICATIVE_HIGH,
                         SILENCE_BELOW_DB, acoustic, acoustic_features)
from .common import FRAME_RATE, SILENCE_DBFS, ProgressFn, to_analysis_rate
from .pipeline import BACKENDS, extract, report
from .recognition import RECOGNIZE_CHUNK_S, _drop_noise_islands, recognize
from ..types import Phoneme, PhonemeTrack

__all__ = [
    "ACOUSTIC_CHUNK_S", "ACOUSTIC_CLASSES", "ALIGN_CHUNK_S", "ALIGN_GUARD_S", "BACKENDS",
    "BREATH_DIGITAL_SILENCE_DBFS", "CLOSURE_BELOW_DB", "CLOSURE_DIP_DB", "FRAME_RATE", "FRICATIVE_HIGH",
    "Phoneme", "PhonemeTrack", "ProgressFn", "RECOGNIZE_CHUNK_S", "SILENCE_BELOW_DB", "SILENCE_DBFS",
    "_drop_noise_islands", "acoustic", "acoustic_features", "align", "extract", "mark_breaths", "recognize",
    "report", "to_analysis_rate", "transcript_words",
]
