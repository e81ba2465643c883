"""Helpers the tests and the benches share: one copy of each. The benches import this module
(``bench/_common.py`` puts ``tests/`` on the path); nothing here imports a bench.
"""

from __future__ import annotations

# --- faces and mouths (test_face, bench_face, bench_visemes) -----------------------------------


# --- sync (test_sync, bench_sync, bench_e2e) ---------------------------------------------------

def shift_audio(w, k: int, fps: float = 25.0, rate: int = 16000):
    """``w`` (N,) delayed (k > 0: the audio comes k frames LATE) or advanced (k < 0) by k frames
    at ``fps``, keeping its length: cut at one end, padded with silence at the other."""
    import torch

    s = int(round(k * rate / fps))
    if s > 0:
        return torch.cat([torch.zeros(s, dtype=w.dtype, device=w.device), w[:-s]])
    if s < 0:
        return torch.cat([w[-s:], torch.zeros(-s, dtype=w.dtype, device=w.device)])
    return w


def grid_recorded(stem: str, detector: str = "haar"):
    """A GRID clip as recorded, as SyncScore's calibration scores it: (face track, 16 kHz mono
    waveform covering the frames, fps, images (T, H, W, 3) float 0..1)."""
    import torch

    from comfyui_lipsync.lipsync_models import face, media
    from comfyui_lipsync.lipsync_models.phonemes import to_analysis_rate
    from testdata import GRID

    frames, fps, (wav, sr) = media.read_video(str(GRID / f"{stem}.mpg"))
    img = frames.float() / 255.0
    w16 = to_analysis_rate(wav.mean(0), sr)
    n16 = int(round(img.shape[0] / fps * 16000))
    w16 = torch.nn.functional.pad(w16, (0, max(n16 - w16.shape[0], 0)))[:n16]
    return face.track_faces(img, detector=detector), w16, fps, img


def held_out_leads(peaks: dict[str, float]) -> dict[str, float]:
    """Leave-one-clip-out natural lead: for each clip, the mean in-sync curve peak of the OTHER
    clips (how ``calibration.NATURAL_LEAD_FRAMES`` is fitted, without the clip it is used on)."""
    return {c: sum(v for o, v in peaks.items() if o != c) / (len(peaks) - 1) for c in peaks}


# --- phonemes and visemes (test_phonemes, bench_phonemes, test_visemes, bench_visemes) ---------
