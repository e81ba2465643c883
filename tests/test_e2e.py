"""The whole node chain end to end on real media, called the way ComfyUI calls it.

A GRID clip is driven by the audio of another GRID clip (a different sentence): LoadAudioDriver
(AUDIO socket from the decoded file, frame count from the IMAGE batch) -> ExtractPhonemes ->
MapVisemes, MaskLowerFace -> LipSyncInference (built-in generator) -> Composite -> SyncScore.
The output must move its mouth like the speaker the audio came from, not like the original
clip, leave the frame above the mouth untouched, and score in sync. bench/bench_e2e.py prints
the full table (all clips, both phoneme paths, a 10-second 512x512 clip).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comfyui_lipsync.lipsync_models import media, mouth_bank
from comfyui_lipsync.lipsync_runner.cli import call_node
from comfyui_lipsync.nodes.composite import Composite
from comfyui_lipsync.nodes.extract_phonemes import ExtractPhonemes
from comfyui_lipsync.nodes.lipsync_inference import LipSyncInference
from comfyui_lipsync.nodes.load_audio_driver import LoadAudioDriver
from comfyui_lipsync.nodes.map_visemes import MapVisemes
from comfyui_lipsync.nodes.mask_lower_face import MaskLowerFace
from comfyui_lipsync.nodes.sync_score import SyncScore

from testdata import GRID_CLIPS, GRID_TEXT

# (clip, clip whose audio drives it, transcript given?): the first clips in sorted order, each
# driven by the next one (as the bench does), one with and one without the transcript.
PAIRS = [(GRID_CLIPS[0], GRID_CLIPS[1], True), (GRID_CLIPS[2], GRID_CLIPS[3], False)]


def pearson(a, b) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    return float((a * b).sum() / math.sqrt(float((a * a).sum() * (b * b).sum())))


def partial_r(x, y, z) -> float:
    """r(x, y) with z held fixed."""
    rxy, rxz, ryz = pearson(x, y), pearson(x, z), pearson(y, z)
    return (rxy - rxz * ryz) / math.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))


@pytest.fixture(scope="module")
def clips(grid_dir):
    """Decoded frames (IMAGE) and audio (AUDIO) of every clip the pairs use, plus each clip's
    own mouth-opening track from MaskLowerFace."""
    out = {}
    for stem in {s for pair in PAIRS for s in pair[:2]}:
        path = str(grid_dir / f"{stem}.mpg")
        frames_u8, fps, _ = media.read_video(path, "test_e2e")
        wave, sr = media.read_audio(path, "test_e2e")
        images = frames_u8.float() / 255.0
        track = call_node(MaskLowerFace, images=images)[0]["face_track"]
        out[stem] = {"images": images, "fps": float(fps), "audio": {"waveform": wave[None], "sample_rate": sr},
                     "opening": track.opening.double().numpy(), "track": track}
    return out


@pytest.fixture(scope="module")
def runs(clips):
    """The chain on every pair, node by node as ComfyUI calls it. SyncScore gets a face track made
    on the output (MaskLowerFace on the composited frames), so it judges the new mouth; the
    shipped workflows pass LipSyncInference's track, i.e. the input frames' mouth (see bench_e2e)."""
    results = []
    for stem, src, with_text in PAIRS:
        c, s = clips[stem], clips[src]
        images = c["images"]
        r = call_node(LoadAudioDriver, audio_file="", audio=s["audio"], images=images, fps=c["fps"])[0]
        driver, audio = r["driver"], r["audio"]
        phonemes = call_node(ExtractPhonemes, driver=driver, transcript=GRID_TEXT[src] if with_text else "")[0]["phonemes"]
        visemes = call_node(MapVisemes, phonemes=phonemes, driver=driver, fps=c["fps"])[0]["visemes"]
        track = c["track"]  # MaskLowerFace on these frames (ComfyUI reuses an unchanged node's output)
        r = call_node(LipSyncInference, images=images, face_track=track, visemes=visemes, driver=driver)[0]
        out = call_node(Composite, images=images, crops=r["crops"], face_track=r["face_track"])[0]["images"]
        # the output judged on its own pixels: MaskLowerFace tracks the composited frames
        out_track = call_node(MaskLowerFace, images=out)[0]["face_track"]
        score = call_node(SyncScore, images=out, driver=driver, face_track=out_track, fps=c["fps"])[0]
        results.append({"clip": stem, "src": src, "images": images, "out": out, "audio": audio, "driver": driver,
                        "in_track": track, "jaw": visemes.param("jaw_open").double().numpy(), "params": visemes.params,
                        "opening": out_track.opening.double().numpy(), "out_track": out_track, "score": score})
    return results


def test_output_is_the_input_clip_with_the_drivers_length(runs, clips):
    for run in runs:
        images, out = run["images"], run["out"]
        assert out.shape == images.shape and out.dtype == images.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        # the driver was cut to the clip: 75 frames at 25 fps = 3 s of audio
        assert run["driver"].num_frames == images.shape[0] == 75
        wave = run["audio"]["waveform"]
        assert wave.shape[-1] == round(3.0 * run["audio"]["sample_rate"])


def test_only_the_lower_face_changes(runs):
    for run in runs:
        images, out, track = run["images"], run["out"], run["in_track"]
        changed = (out != images).any(-1)  # (B, H, W)
        assert bool(changed.any()), f"{run['clip']}: the chain changed nothing"
        # nothing above the nose line (minus a margin for the feather) or outside the face box
        nose_y = float(track.mouth[:, 6, 1].min())
        top = int(nose_y) - 12
        assert not bool(changed[:, :top].any()), f"{run['clip']}: pixels above the nose changed"
        x0, x1 = float(track.boxes[:, 0].min()), float(track.boxes[:, 2].max())
        assert not bool(changed[:, :, : int(x0) - 4].any()) and not bool(changed[:, :, int(x1) + 4:].any())
        # and the mouth region did change, on most frames
        per_frame = changed.flatten(1).any(1).float().mean()
        assert per_frame > 0.8, f"{run['clip']}: only {per_frame:.0%} of frames changed"


def test_mouth_moves_like_the_true_speaker(runs, clips):
    """Issue 6's bar is r >= 0.6 per clip (bench_e2e prints it for all clips); here a margin
    below it, and the generator must follow its jaw track closely."""
    r_true = []
    for run in runs:
        got, true = run["opening"], clips[run["src"]]["opening"]
        r_jaw = pearson(got, run["jaw"])
        r_true.append(pearson(got, true))
        print(f"{run['clip']} <- {run['src']}: r(out,true) {r_true[-1]:+.2f} r(out,jaw) {r_jaw:+.2f} "
              f"SyncScore {run['score']['offset_frames']:+d} conf {run['score']['confidence']:.2f}")
        assert r_jaw >= 0.8, f"{run['clip']}: output does not follow MapVisemes' jaw_open (r {r_jaw:.2f})"
        assert r_true[-1] >= 0.3, f"{run['clip']}: r(output, true speaker) {r_true[-1]:.2f}"
    assert np.mean(r_true) >= 0.45, r_true


def test_original_mouth_motion_does_not_show_through(runs, clips):
    """The default generator gives frame t the lower face of another frame of the clip (mouth_bank):
    beyond that chosen frame's mouth, frame t's own opening must not show (partial r given the chosen
    frames' openings; 30 % of the original opening mixed in measures 0.94 and 0.96 on these pairs)."""
    for run in runs:
        got, orig = run["opening"], clips[run["clip"]]["opening"]
        chosen = mouth_bank.select_mouths(run["in_track"], run["params"]).source
        show = partial_r(got, orig, orig[chosen])
        print(f"{run['clip']}: r(out, original | chosen frames) {show:+.2f}")
        assert show < 0.35, f"{run['clip']}: the original mouth motion shows through (partial r {show:.2f})"


def test_syncscore_of_the_output_is_in_sync(runs):
    for run in runs:
        score = run["score"]
        assert abs(score["offset_frames"]) <= 1, f"{run['clip']}: {score['report']}"
        assert score["confidence"] > 0.2, f"{run['clip']}: {score['report']}"
        assert abs(score["offset_ms"] - 40.0 * score["offset_frames"]) < 1e-6


def test_a_clip_revoiced_with_its_own_line_is_never_read_confidently_off(clips):
    """The easiest dub: lbax4n given its own line, its phonemes recognised (no transcript). Over the whole
    clip the face mesh's lip gap of the output follows the input's at lag -1 or 0 (r 0.82; bench_bank's
    chain), yet output frames 9-23 wear input frames 3-14, 6-9 frames late: neither in sync nor 6 off
    throughout. SyncScore read -6 frames and called it "audio early" while its lip signals disagreed
    (none of them peaked within a frame of the combined peak). It reads within one frame, or says it is
    uncertain, and says why."""
    c = clips[GRID_CLIPS[2]]
    r = call_node(LoadAudioDriver, audio_file="", audio=c["audio"], images=c["images"], fps=c["fps"])[0]
    driver = r["driver"]
    phonemes = call_node(ExtractPhonemes, driver=driver, transcript="")[0]["phonemes"]
    visemes = call_node(MapVisemes, phonemes=phonemes, driver=driver, fps=c["fps"])[0]["visemes"]
    r = call_node(LipSyncInference, images=c["images"], face_track=c["track"], visemes=visemes, driver=driver)[0]
    out = call_node(Composite, images=c["images"], crops=r["crops"], face_track=r["face_track"])[0]["images"]
    out_track = call_node(MaskLowerFace, images=out)[0]["face_track"]
    score, ui = call_node(SyncScore, images=out, driver=driver, face_track=out_track, fps=c["fps"])
    sure = not ui["lipsync_sync"][0].get("uncertain", False)
    assert abs(score["offset_frames"]) <= 1 or not sure, score["report"]
    if not sure and abs(score["offset_frames"]) > 1:
        assert "UNCERTAIN: the offset is not reliable (no lip signal's own curve peaks" in score["report"]


def test_shifted_audio_is_caught(runs):
    """The same output judged against its audio delayed by 5 frames: SyncScore sees it."""
    run = runs[0]
    audio = run["audio"]
    sr = audio["sample_rate"]
    shift = int(round(5 * sr / 25.0))
    wave = audio["waveform"]
    late = torch.cat([torch.zeros_like(wave[..., :shift]), wave[..., :-shift]], -1)
    driver = call_node(LoadAudioDriver, audio_file="", audio={"waveform": late, "sample_rate": sr},
                       images=run["out"], fps=25.0)[0]["driver"]
    score = call_node(SyncScore, images=run["out"], driver=driver, face_track=run["out_track"], fps=25.0)[0]
    assert 4 <= score["offset_frames"] <= 6, score["report"]
