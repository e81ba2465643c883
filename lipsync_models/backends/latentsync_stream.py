"""LatentSync for a streamed clip (the headless runner): the generator object that
:mod:`..stream_generate` hands to the runner's passes, making the same crops as
:func:`.latentsync.lipsync_latentsync`, one 16-frame chunk at a time, from frames decoded again.

Per clip it keeps the Whisper features of the line (0.4 MB a second: 230 MB for 10 minutes) and the noise image;
per chunk, the chunk's aligned crops and latents. The runner's last pass hands it whole chunks: clip
frames ``16k`` .. ``16k + 15`` (:attr:`LatentSyncStream.chunk_frames`), so its chunks are the node's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from ..crops import crop_batches
from ..errors import InputError
from ..types import AudioDriver, FaceTrack
from . import latentsync as L
from . import latentsync_files as LF
from .latentsync_align import align_track, template_mask
from .latentsync_audio import AUDIO_RATE, whisper_features

log = logging.getLogger("comfyui_lipsync")


@dataclass(frozen=True)
class LatentSyncJob:
    """What the runner's ``--latentsync DIR`` asks for: the files and the node's widgets."""

    files: LF.LatentSyncFiles
    version: str = "1.6"
    steps: int = L.STEPS
    seed: int = 1247
    reuse: int = 0
    chunk_frames = L.CHUNK


class LatentSyncStream:
    """The interface of :class:`..stream_generate.Generator` for LatentSync: nothing to collect before
    the last pass; :meth:`generate` makes whole 16-frame chunks."""

    uses_bank = False
    net = None
    full: set = frozenset()
    chunk_frames = L.CHUNK

    def __init__(self, track: FaceTrack, driver: AudioDriver, job: LatentSyncJob, strength: float, device,
                 who: str = L.WHO):
        if job.version not in L.SIZES:
            raise InputError(f"{who}: LatentSync version must be one of {', '.join(L.SIZES)}, got {job.version!r}.")
        self.size = L.SIZES[job.version]
        L._check_args(job.steps, L.GUIDANCE, self.size, who, job.reuse)
        if int(driver.sample_rate) != AUDIO_RATE:
            raise InputError(f"{who}: the audio driver must be {AUDIO_RATE} Hz for LatentSync, got {driver.sample_rate}.")
        self.track, self.driver, self.job, self.who = track, driver, job, who
        self.strength, self.device = float(strength), torch.device(device)
        self.need = L.memory_text(self.size, L.default_dtype(self.device), self.device)
        log.info("%s: LatentSync %s: %s", who, job.version, self.need)
        self.models = L.cached_models(job.files, self.device, who=who)
        self.out_track = align_track(track, self.size)
        self.feats = whisper_features(self.models.encoder, self.models.filters,
                                      driver.waveform.detach().to("cpu", torch.float32).reshape(-1))
        self.noise = L.initial_noise(self.size, job.seed)
        self.keep = template_mask(self.size, self.device)
        self.ref_frame = torch.empty(0)  # the runner's collecting pass has nothing to wait for
        self.on_frames = None
        """Called as ``on_frames(done)`` after each denoising step of :meth:`generate`: ``done`` (float)
        frames of its call are made so far (a 16-frame chunk takes minutes on a CPU: the runner's bar
        moves with the steps, not only with the chunks)."""

    def regions(self, chunk: int) -> dict:
        """None of its frames is given as a region (:meth:`..stream_generate.Generator.regions`)."""
        return {}

    def collect(self, first: int, small_frames: torch.Tensor, fulls: dict, regions: dict | None = None) -> None:
        pass

    def ready(self) -> None:
        pass

    def generate(self, start: int, frames: torch.Tensor, part: FaceTrack | None = None) -> torch.Tensor:
        """Crops (n, S, S, 3) float32 0..1 of frames (n, H, W, 3) float 0..1 or uint8, clip frames ``start``...;
        ``start`` is a multiple of 16 and every 16 frames are one chunk (the last may be shorter)."""
        if int(start) % L.CHUNK:
            raise ValueError(f"LatentSync chunks start at multiples of {L.CHUNK}, not at frame {start}")
        n = int(frames.shape[0])
        part = part if part is not None else self.out_track.frames(slice(start, start + n))
        out = [L.generate_chunk(self.models, crops, self.track.found[start + a:start + e], self.feats,
                                self.driver.fps, start + a, self.noise, self.keep, self.job.steps, L.GUIDANCE,
                                self.strength, self.job.reuse, self._stepper(a, e))
               for a, e, crops in crop_batches(frames, part, L.CHUNK, self.device)]
        return torch.cat(out).permute(0, 2, 3, 1)

    def _stepper(self, a: int, e: int):
        """``on_step`` for the chunk of frames ``a:e`` of a :meth:`generate` call (None without
        :attr:`on_frames`)."""
        if self.on_frames is None:
            return None
        done = [0]

        def step():
            done[0] += 1
            self.on_frames(a + (e - a) * done[0] / self.job.steps)
        return step

    def report_track(self) -> FaceTrack:
        j, tr = self.job, self.out_track
        text = L.note(j.files, j.version, j.steps, L.GUIDANCE, j.seed, j.reuse, self.need)
        return replace(tr, report="\n".join(x for x in (tr.report, text) if x))


def prepare(track: FaceTrack, driver: AudioDriver, job: LatentSyncJob, strength: float = 1.0, device="cpu",
            who: str = L.WHO) -> LatentSyncStream:
    return LatentSyncStream(track, driver, job, strength, device, who)
