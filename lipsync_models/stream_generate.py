"""LipSyncInference for a streamed clip: the same generators as :func:`..backends.lipsync`, run chunk
by chunk on frames that are decoded again for each pass, so no pass holds the whole clip.

The clip-level choices are made once, before the frames are generated, so they are continuous across
chunks: :func:`prepare` chooses the clip's own mouths over the whole clip (the Viterbi selection of
:func:`..mouth_bank.select_mouths`, which needs only the face track and the viseme track) and the warp
generator's lip frame; :meth:`Generator.collect` then takes, in one pass over the frames, the
64-px alignment crops of every frame (from the small tracking copy) and the full-size crops of the
frames the selection uses; :meth:`Generator.generate` makes the crops of any chunk of frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from . import backends, generator, mouth_bank
from .backends import BANK, BUILTIN, BUILTINS, WARP
from .crops import crop_faces
from .errors import InputError
from .stream_track import face_region, in_region
from .types import OWN_PIXELS, AudioDriver, FaceTrack, VisemeTrack, without_own_pixels

WHO = "LipSyncInference"
ALIGN_CHUNK = 512
"""Frames whose alignment crops are converted to float at a time (:func:`alignment`)."""


def alignment(small: torch.Tensor, source: np.ndarray, chunk: int = ALIGN_CHUNK):
    """:func:`..mouth_bank.alignment` (with ``residual``) on uint8 crops (B, A, A, 3), ``chunk`` frames
    at a time (each chunk with the source frames it uses), so only a chunk is ever float. Same result."""
    b = len(source)
    shift, gain, res = np.zeros((b, 2)), np.ones((b, 3)), np.full(b, np.nan)
    for a in range(0, b, chunk):
        e = min(a + chunk, b)
        src = np.asarray(source[a:e])
        extra = sorted(set(int(j) for j in src[src >= 0]) - set(range(a, e)))
        rows = list(range(a, e)) + extra
        pos = {f: i for i, f in enumerate(rows)}
        sub = np.array([pos[int(j)] if j >= 0 else -1 for j in src] + [-1] * len(extra), np.int64)
        sh, g, r = mouth_bank.alignment(small[torch.as_tensor(rows)].float().div_(255.0), sub, residual=True)
        shift[a:e], gain[a:e], res[a:e] = sh[:e - a], g[:e - a], r[:e - a]
    return shift, gain, res


@dataclass
class Generator:
    """The generator state of one streamed clip (see the module doc).

    track: the clip's FaceTrack at full size; small_track: the same at the tracking copy's size
    (its alignment crops are cut from there); selection: the clip's own mouths, or None (warp or a
    checkpoint); full: the frames whose full-size crops :meth:`collect` keeps."""

    track: FaceTrack
    small_track: FaceTrack
    visemes: VisemeTrack
    driver: AudioDriver
    strength: float
    device: torch.device
    selection: mouth_bank.Selection | None
    net: object | None
    ref: int
    full: set
    note: str
    small: torch.Tensor | None = None
    crops: dict | None = None
    ref_frame: torch.Tensor | None = None
    plan: mouth_bank.Plan | None = None
    warp_state: tuple | None = None
    _used: set | None = None

    @property
    def used(self) -> set:
        """The frames whose lower faces the selection shows."""
        if self._used is None:
            self._used = set(int(f) for f in mouth_bank.used_frames(self.selection)) if self.uses_bank else set()
        return self._used

    @property
    def uses_bank(self) -> bool:
        return self.selection is not None and self.selection.use_bank

    @property
    def warps(self) -> bool:
        return self.net is None and (not self.uses_bank or bool(self.selection.warp.any()))

    @property
    def out_track(self) -> FaceTrack:
        """The track Composite pastes with (Wav2Lip's face crop for a checkpoint; the clip's own
        mouths mark their crops as the clip's own pixels, :data:`..types.OWN_PIXELS`)."""
        if self.net is not None:
            from .backends import wav2lip

            return wav2lip.face_track(self.track)
        if self.uses_bank:
            return replace(self.track, extras={**self.track.extras, OWN_PIXELS: mouth_bank.own_pixels(self.selection)})
        return self.track

    def regions(self, chunk: int) -> dict:
        """{frame: (x0, y0, x1, y1)} for the frames whose full-size crops :meth:`collect` keeps from
        chunks of ``chunk`` frames (the first at frame 0): the part of the frame those crops sample,
        one region per chunk (the frame the warp generator reads whole is left out: it comes whole). A
        frame source may then hand :meth:`collect` those regions instead of whole frames."""
        keys = sorted(int(k) for k in self.full if self.uses_bank and int(k) in self.used)
        out = {}
        for c in sorted(set(k // chunk for k in keys)):
            group = [k for k in keys if k // chunk == c]
            box = face_region(self.track.frames(np.asarray(group)))
            out.update({k: box for k in group if k != self.ref})
        return out

    def collect(self, first: int, small_frames: torch.Tensor, fulls: dict, regions: dict | None = None) -> None:
        """Take the alignment crops of ``small_frames`` (n, h, w, 3) uint8 (frames ``first``...) and the
        full-size crops of the frames in ``fulls`` {index: (H, W, 3) uint8} that are wanted; a frame in
        ``regions`` (:meth:`regions` for chunks starting at ``first``) is given as that region of it."""
        n = int(small_frames.shape[0])
        if self.uses_bank:
            if self.small is None:
                b = self.track.num_frames
                self.small = torch.zeros((b, mouth_bank.ALIGN_SIZE, mouth_bank.ALIGN_SIZE, 3), dtype=torch.uint8)
            part = self.small_track.frames(slice(first, first + n))
            x0, y0, x1, y1 = face_region(part)
            # cut from the uint8 frames (no float copy of them), as uint8
            self.small[first:first + n] = crop_faces(small_frames[:, y0:y1, x0:x1], in_region(part, (x0, y0, x1, y1)),
                                                     size=mouth_bank.ALIGN_SIZE)
        self.crops = self.crops if self.crops is not None else {}
        if self.ref in fulls:
            self.ref_frame = fulls[self.ref][None].float().div_(255.0)
        keys = sorted(int(k) for k in fulls if self.uses_bank and int(k) in self.used)
        if keys:  # one region and one call for the chunk's chosen frames
            regions = regions or {}
            part = self.track.frames(np.asarray(keys))
            given = {regions[k] for k in keys if k in regions}
            if len(given) > 1:
                raise ValueError(f"collect: frames {keys} are given as {len(given)} regions, not one")
            box = given.pop() if given else face_region(part)  # that of the chunk's frames, as regions() has it
            x0, y0, x1, y1 = box
            # uint8: cut as uint8, no float copy
            f = torch.stack([fulls[k] if k in regions else fulls[k][y0:y1, x0:x1] for k in keys])
            crops = crop_faces(f, in_region(part, box), device=self.device)
            self.crops.update(zip(keys, crops[..., :3].permute(0, 3, 1, 2).contiguous()))  # as the bank keeps them

    def ready(self) -> None:
        """Build the plan and the warp generator's state once :meth:`collect` has seen every frame."""
        crops = self.crops or {}
        have = set(crops) | ({self.ref} if self.ref_frame is not None else set())
        missing = sorted(self.full - have)
        if missing:
            raise InputError(f"{WHO}: the clip ended before frame {missing[0]}, which the generator needs; "
                             "the video may be truncated.")
        if self.uses_bank:
            self.plan = mouth_bank.make_plan(self.selection, self.small, crops, align=alignment)
            self.selection = self.plan.selection
            self.note = f"generator: {self.selection.note}"
            self.small = None
        if self.warps:
            b = self.track.num_frames
            self.warp_state = backends._warp_setup(self.ref_frame.expand(b, -1, -1, -1), self.track, self.ref,
                                                   self.device, WHO)
        self.crops, self.ref_frame = None, None

    def generate(self, start: int, frames: torch.Tensor, part: FaceTrack | None = None) -> torch.Tensor:
        """Crops (n, S, S, 3) float32 0..1 of ``frames`` (n, H, W, 3) float 0..1 or uint8, clip frames
        ``start``...: what :func:`..backends.lipsync` makes for them. ``part``: the track of these
        frames (default: :attr:`out_track`'s), e.g. of a region cut from them."""
        stop = start + int(frames.shape[0])
        dev = self.device
        part = part if part is not None else self.out_track.frames(slice(start, stop))
        crops = backends.own_crops(frames, part, start, self.plan, dev)
        gen = backends.generate_batch(crops, start, self.visemes, self.driver, self.strength, net=self.net,
                                      plan=self.plan, warp_state=self.warp_state)
        return gen.clamp(0, 1).permute(0, 2, 3, 1)

    def report_track(self) -> FaceTrack:
        """The output's face track (the chosen frames' mouths, as :func:`..backends.lipsync` returns it),
        its report ending with the generator's note."""
        tr = self.out_track
        if self.plan is not None:
            tr = mouth_bank.output_track(tr, self.plan)
        return replace(tr, report="\n".join(x for x in (tr.report, self.note) if x))


def prepare(track: FaceTrack, small_track: FaceTrack, visemes: VisemeTrack, driver: AudioDriver,
            model: str | None = None, strength: float = 1.0, lip_frame: int = -1,
            device: torch.device | str = "cpu") -> Generator:
    """The clip-level choices of :func:`..backends.lipsync` for a streamed clip, made before any
    frame is generated; then :meth:`Generator.collect` every frame, :meth:`Generator.ready`, and
    :meth:`Generator.generate` chunk by chunk."""
    b = backends.check_lengths(torch.empty((track.num_frames, 1, 1, 3)), track, visemes, driver, WHO)
    track, small_track = without_own_pixels(track), without_own_pixels(small_track)  # a generator's input
    if not 0.0 <= float(strength) <= 2.0:
        raise InputError(f"{WHO}: strength must be between 0 and 2, got {strength}.")
    if int(lip_frame) >= b:
        raise InputError(f"{WHO}: lip_frame {int(lip_frame)} is past the clip's last frame ({b - 1}); "
                         "-1 picks the most closed frame.")
    device = torch.device(device)
    if getattr(model, "chunk_frames", None):  # --latentsync DIR (a LatentSyncJob): its own streamed generator
        from .backends import latentsync_stream

        return latentsync_stream.prepare(track, driver, model, strength, device)
    if backends.musetalk.is_musetalk(model):  # a MuseTalk 1.5 folder: its own streamed generator
        from .backends import musetalk_stream

        return musetalk_stream.prepare(track, driver, model, strength, lip_frame, device)
    sel, net, note = None, None, ""
    if model is None or model in BUILTINS:
        if model in (None, BUILTIN, BANK):
            sel = mouth_bank.select_mouths(track, visemes.params, strength, visemes.fps)
            note = f"generator: {sel.note}"
        else:
            note = f"generator: {WARP}"
    else:
        from .backends import wav2lip

        net = wav2lip.cached_wav2lip(model, device, WHO)
    full, ref = set(), -1
    if sel is not None and sel.use_bank:
        full = set(int(f) for f in mouth_bank.used_frames(sel))
    if net is None and (sel is None or not sel.use_bank or bool(sel.warp.any())):
        m = track.transform.to(torch.float32)
        mouth_crop = track.mouth.to(torch.float32) @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
        ref = int(lip_frame) if int(lip_frame) >= 0 else generator.reference_frame(mouth_crop, track.found)
        full.add(ref)
    return Generator(track, small_track, visemes, driver, float(strength), device, sel, net, ref, full, note)
