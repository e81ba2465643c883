"""ExtractPhonemes: timed phonemes from the driver audio (recognition, alignment or acoustic classes)."""

from __future__ import annotations

import logging

import torch

from ..lipsync_models import audio as audio_lib
from ..lipsync_models import phonemes as P
from ..lipsync_models import ui_payload
from ..lipsync_models.calibration import RECOGNIZE_LANGUAGE_WEIGHT
from ..lipsync_models.errors import InputError
from ..lipsync_models.types import ANALYSIS_RATE, DRIVER, PHONEMES
from . import _comfy

log = logging.getLogger("comfyui_lipsync")

WHO = "ExtractPhonemes"
UI_MAX_PHONEMES = 2000
"""The node's on-screen preview (text and phoneme bands) shows at most this many phonemes; the
STRING output and the track always hold all of them."""


class ExtractPhonemes:
    DESCRIPTION = ("Finds the phonemes in the spoken line and when each is said. 'auto' aligns the typed "
                   "transcript when there is one (most accurate), else recognises English phones from the "
                   "sound alone; 'acoustic' works without any model for other languages, singing or "
                   "noises, but only knows six mouth classes. Audible in-breaths before a line are marked "
                   "BREATH (MapVisemes parts the lips there). Output feeds MapVisemes. Holds the timed "
                   "phonemes (a few KB) and keeps the speech decoder loaded (about 25 MB) for the next run.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "backend": (list(P.BACKENDS), {
                    "default": "auto",
                    "tooltip": "auto: align the transcript when one is typed, else recognize. recognize: English "
                               "phone recognition (pocketsphinx), no text needed. align: forced alignment of the "
                               "transcript (most accurate; needs the exact words). acoustic: model-free mouth "
                               "classes (silence, closed, fricative, open, spread, rounded) for any language, "
                               "singing or sounds."}),
                "transcript": ("STRING", {
                    "multiline": True, "default": "", "dynamicPrompts": False,
                    "tooltip": "The words actually spoken, in English (case, punctuation and digits are fine: "
                               "'Lay blue at X4 now.'). Used by auto and align; leave empty to recognize. "
                               "Unknown words get a spelling-based pronunciation."}),
            },
            "optional": {
                "driver": (DRIVER, {"tooltip": "Audio driver from LoadAudioDriver (its 16 kHz waveform is used). "
                                               "Wins over the audio input when both are connected."}),
                "audio": ("AUDIO", {"tooltip": "Any ComfyUI AUDIO (LoadAudio, a TTS node) when no driver is "
                                               "connected; mixed to mono and resampled to 16 kHz."}),
                "language_weight": ("FLOAT", {
                    "default": RECOGNIZE_LANGUAGE_WEIGHT, "min": 0.1, "max": 20.0, "step": 0.1, "advanced": True,
                    "tooltip": "recognize only: weight of the phone language model. Lower finds more (and more "
                               "spurious) phones, higher drops short ones. 2 works best on the test speech."}),
            },
        }

    RETURN_TYPES = (PHONEMES, "STRING")
    RETURN_NAMES = ("phonemes", "listing")
    OUTPUT_TOOLTIPS = (
        "Timed phonemes (ARPAbet label, start, end, confidence; SIL for silence, BREATH for an audible "
        "in-breath just before speech) for MapVisemes.",
        "Readable listing: notes, the aligned words with their times (align), then one phoneme per line: "
        "start and end in seconds, label, confidence.",
    )
    FUNCTION = "extract"
    CATEGORY = "lipsync/audio"

    def extract(self, backend="auto", transcript="", driver=None, audio=None,
                language_weight=RECOGNIZE_LANGUAGE_WEIGHT):
        if driver is not None:
            if not isinstance(getattr(driver, "waveform", None), torch.Tensor):
                raise InputError(f"{WHO}: driver must be the driver output of LoadAudioDriver, got "
                                 f"{type(driver).__name__}.")
            wave = driver.waveform
            if int(getattr(driver, "sample_rate", ANALYSIS_RATE)) != ANALYSIS_RATE:
                wave = audio_lib.to_analysis_rate(wave, driver.sample_rate)
        elif audio is not None:
            wave = audio_lib.audio_to_16k(audio, WHO)
        else:
            raise InputError(f"{WHO}: no audio: connect the driver output of LoadAudioDriver, or an AUDIO "
                             "output (LoadAudio, a TTS node), to this node.")
        if backend not in P.BACKENDS:
            raise InputError(f"{WHO}: unknown backend {backend!r}; choose one of {', '.join(P.BACKENDS)}.")
        progress = _comfy.Progress(2, WHO)
        track = P.extract(wave, backend=backend, transcript=transcript or "", lw=float(language_weight),
                          on_progress=progress)
        notes = P.report(track, wave)
        for n in notes:
            log.warning("%s: %s", WHO, n)
        head = list(notes)
        if track.words:
            head.append("words: " + ", ".join(f"{w} {s:.2f}-{e:.2f}" for w, s, e in track.words))
        listing = "\n".join(head + [track.text()])
        shown = track.phonemes[:UI_MAX_PHONEMES]
        preview = listing
        if len(track.phonemes) > UI_MAX_PHONEMES:
            lines = listing.splitlines()
            keep = len(head) + 1 + UI_MAX_PHONEMES
            preview = "\n".join(lines[:keep] + [f"... {len(track.phonemes) - UI_MAX_PHONEMES} more phonemes "
                                                 "(all of them are in the listing output)"])
        ui = {"text": [preview]}
        ui.update(ui_payload.phonemes_ui(shown, wave.detach().cpu(), ANALYSIS_RATE, duration=track.duration))
        return {"ui": ui, "result": (track, listing)}


NODE_CLASS_MAPPINGS = {"LipSyncExtractPhonemes": ExtractPhonemes}
NODE_DISPLAY_NAME_MAPPINGS = {"LipSyncExtractPhonemes": "ExtractPhonemes"}
