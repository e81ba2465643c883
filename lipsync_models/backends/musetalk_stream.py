"""MuseTalk 1.5 for a streamed clip (the headless runner): the generator object that
:mod:`..stream_generate` hands to the runner's passes, making the same crops as
:func:`.musetalk.lipsync_musetalk` chunk by chunk, from frames decoded again for each pass.

Per clip it keeps the Whisper features of the line (about 4 MB for 10 s) and one reference latent;
per chunk, the chunk's 256-px crops and audio tokens. The models come from :func:`.musetalk.cached_models`
(loaded once for every clip of a run).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..crops import crop_batches
from ..errors import InputError
from ..types import AudioDriver, FaceTrack
from . import musetalk as M

WHO = "LipSyncInference"


class MuseTalkStream:
    """The interface of :class:`..stream_generate.Generator` for MuseTalk: :meth:`collect` takes the
    reference frame's latent (frame ``ref``, in ``full``), :meth:`ready` checks it came,
    :meth:`generate` makes any chunk's crops."""

    uses_bank = False
    net = None

    def __init__(self, track: FaceTrack, driver: AudioDriver, files, strength: float, lip_frame: int,
                 device, batch_size: int = 8, who: str = WHO):
        self.track, self.driver, self.files, self.who = track, driver, files, who
        self.strength, self.batch_size = float(strength), max(int(batch_size), 1)
        self.device = torch.device(device)
        self.models = M.cached_models(files, self.device, who=who)
        self.out_track = M.crop_track(track)
        self.feats = M.whisper_features(self.models.encoder, self.models.extractor, driver.waveform,
                                        self.device, self.models.dtype)
        self.ref = M.reference_index(track, lip_frame, who)
        own = self.ref == M.OWN_FRAME
        self.full = set() if own else {self.ref}
        self.ref_latent = None
        # the runner's frame pass stops once ref_frame is set: with each frame's own crop there is nothing to wait for
        self.ref_frame = torch.empty(0) if own else None

    def regions(self, chunk: int) -> dict:
        """None of its frames is given as a region (:meth:`..stream_generate.Generator.regions`)."""
        return {}

    def collect(self, first: int, small_frames: torch.Tensor, fulls: dict, regions: dict | None = None) -> None:
        """Encode the reference frame when it is among ``fulls`` {index: (H, W, 3) uint8}."""
        if self.ref in fulls:
            frame = fulls[self.ref][None].float().div_(255.0)
            self.ref_latent = M.reference_latent(self.models, frame, self.out_track.frames(slice(self.ref, self.ref + 1)))
            self.ref_frame = self.ref_latent

    def ready(self) -> None:
        if self.ref != M.OWN_FRAME and self.ref_latent is None:
            raise InputError(f"{self.who}: the clip ended before frame {self.ref}, which MuseTalk's reference "
                             "latent needs; the video may be truncated.")

    def generate(self, start: int, frames: torch.Tensor, part: FaceTrack | None = None) -> torch.Tensor:
        """Crops (n, 256, 256, 3) float32 0..1 of frames (n, H, W, 3) float 0..1 or uint8, clip frames ``start``...,
        ``batch_size`` at a time. ``part``: the track of these frames (default: :attr:`out_track`'s)."""
        n = int(frames.shape[0])
        part = part if part is not None else self.out_track.frames(slice(start, start + n))
        out = [M.generate_frames(self.models, crops, self.track.found[start + a:start + e], self.feats,
                                 self.driver.fps, start + a, self.ref_latent, self.strength)
               for a, e, crops in crop_batches(frames, part, self.batch_size, self.device)]
        return torch.cat(out).permute(0, 2, 3, 1)

    def report_track(self) -> FaceTrack:
        tr = self.out_track
        return replace(tr, report="\n".join(x for x in (tr.report, M.note(self.files, self.ref)) if x))


def prepare(track: FaceTrack, driver: AudioDriver, model, strength: float = 1.0, lip_frame: int = -1,
            device="cpu", batch_size: int = 8, who: str = WHO) -> MuseTalkStream:
    """The streamed MuseTalk generator of a clip (``model``: a MuseTalk folder or MuseTalkFiles)."""
    return MuseTalkStream(track, driver, M.resolve_files(model, who), strength, lip_frame, device, batch_size, who)
