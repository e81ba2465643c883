"""Helpers the tests and the benches share: one copy of each. The benches import this module
(``bench/_common.py`` puts ``tests/`` on the path); nothing here imports a bench.
"""

from __future__ import annotations

# --- files --------------------------------------------------------------------------------------

def write_wav(path, samples, sr: int) -> None:
    """samples: (N,) or (N, C) float in [-1, 1] (numpy or torch) -> 16-bit wav."""
    import wave as wavmod

    import numpy as np

    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    pcm = np.clip(np.round(data * 32767), -32768, 32767).astype("<i2")
    with wavmod.open(str(path), "wb") as w:
        w.setnchannels(data.shape[1])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


# --- faces and mouths (test_face, bench_face, bench_visemes) -----------------------------------


def band_envelope(audio, sr: int, fps: float, n: int):
    """300-3000 Hz natural-log energy of ``audio`` (C, T) tensor at ``sr`` Hz, one value per video frame
    (frame i averages samples [i * sr / fps, (i + 1) * sr / fps)), (n,) float64 numpy; a 4th-order
    Butterworth band-pass run forwards and backwards (no delay).

    ``lipsync_models.sync.band_envelope`` does not do this job: it reads 16 kHz mono at 100 Hz (25 ms Hann
    windows, log10, floored 60 dB under the peak), so comparing it with a per-frame mouth track needs a
    resampling step and another floor, and the figures of test_face / bench_face were measured with this one.
    """
    import numpy as np
    from scipy import signal

    x = audio.numpy().mean(axis=0).astype(np.float64)
    sos = signal.butter(4, [300, 3000], btype="band", fs=sr, output="sos")
    y = signal.sosfiltfilt(sos, x)
    hop = sr / fps
    return np.array([np.log(np.mean(y[int(i * hop):int((i + 1) * hop)] ** 2) + 1e-10) for i in range(n)])


def best_lag(a, b, max_lag: int = 3) -> tuple[float, int]:
    """Pearson r of ``a[t]`` with ``b[t - lag]`` (1-D numpy, same length), maximised over
    ``|lag| <= max_lag`` -> (r, lag); a positive lag means ``a`` follows ``b``."""
    import numpy as np

    a = (a - a.mean()) / (a.std() + 1e-12)
    b = (b - b.mean()) / (b.std() + 1e-12)
    n = len(a)
    rs = {lag: float(np.corrcoef(a[max(0, lag):n + min(0, lag)], b[max(0, -lag):n - max(0, lag)])[0, 1])
          for lag in range(-max_lag, max_lag + 1)}
    lag = max(rs, key=rs.get)
    return rs[lag], lag



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

def levenshtein(a, b) -> int:
    """Edit distance between two sequences (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def frame_envelope(wave16k, fps: float, n: int):
    """The speech envelope at video frames: ``lipsync_models.sync.band_envelope`` (log energy of
    300-3000 Hz every 10 ms) read at the centres of ``n`` frames at ``fps`` -> (n,) float64 numpy."""
    import numpy as np

    from comfyui_lipsync.lipsync_models.sync import ENVELOPE_RATE, band_envelope

    env = band_envelope(wave16k)
    idx = np.round((np.arange(n) + 0.5) / fps * ENVELOPE_RATE).astype(int)
    return env[np.clip(idx, 0, len(env) - 1)]


def leave_one_out(per_clip: dict, higher_is_better: bool = True) -> tuple[float, list]:
    """Leave-one-clip-out figure of a constant chosen from a candidate grid.

    per_clip: candidate value -> its figure on each clip (same clip order for every value). For
    each clip in turn the value with the best mean over the other clips is picked and its figure on
    the held-out clip kept. Returns (mean held-out figure, the value picked for each clip)."""
    values = list(per_clip)
    n = len(per_clip[values[0]])
    sign = 1.0 if higher_is_better else -1.0
    held, picks = [], []
    for i in range(n):
        best = max(values, key=lambda v: sign * sum(per_clip[v][j] for j in range(n) if j != i))
        picks.append(best)
        held.append(per_clip[best][i])
    return sum(held) / n, picks


# --- generated mouths: realness and stability (test_mouth_bank, bench_bank) -------------------

LOWER_FACE = (0.2, 0.8, 0.6, 1.05)
"""Cheeks, mouth and chin, not the eyes: x0, x1, y0, y1 in face-box widths from the box's top-left."""
MOUTH = (0.31, 0.71, 0.65, 0.95)
"""The lips, teeth and the skin just around them: centred on the mouth (which sits at 0.51, 0.80 box
widths, 0.27 wide: lipsync_models.face's geometry), 1.5 mouth widths across and 1.1 high. Not fitted."""


def lower_faces(images, boxes, size=(48, 32), window=LOWER_FACE, normalise=True):
    """(B, 32*48*3) lower faces cut in a window fixed by each frame's face box (``window``: x0, x1,
    y0, y1 in box widths from its top-left corner; :data:`LOWER_FACE` or :data:`MOUTH`), each
    channel normalised to zero mean and unit spread (``normalise=False``: as they are, so a mouth
    whose colour or contrast was changed reads as changed)."""
    import cv2
    import numpy as np

    out = []
    h, w = images.shape[1:3]
    ax, bx, ay, by = window
    for img, (x0, y0, x1, _) in zip(images[..., :3].numpy(), boxes):
        fw = x1 - x0
        xa, xb = int(max(x0 + ax * fw, 0)), int(min(x0 + bx * fw, w))
        ya, yb = int(max(y0 + ay * fw, 0)), int(min(y0 + by * fw, h))
        cut = cv2.resize(np.ascontiguousarray(img[ya:yb, xa:xb]), size, interpolation=cv2.INTER_AREA)
        if normalise:
            cut = (cut - cut.mean((0, 1))) / (cut.std((0, 1)) + 1e-6)
        out.append(cut.ravel())
    return np.asarray(out, np.float64)


def realness(inp, out, min_gap: int = 5, q: float = 50.0, frames=None) -> float:
    """Median over output frames of (distance to the nearest input lower face) / (that frame's
    input nearest-neighbour distance among input frames >= ``min_gap`` frames away). ``frames``: the
    clip frame each input frame shows, when the input replays a clip (bench_bank's takes: a frame
    and its replay are the same picture, not two mouths); None: input frame i is clip frame i.

    Read on :data:`MOUTH` cuts, it asks whether each output mouth is one of the clip's own. On
    :data:`LOWER_FACE` cuts the cheeks and chin, which neither generator changes, dominate: an
    output frame is then nearest to its own input frame whatever was painted on its mouth (the
    warp generator's drawn mouths read 0.90-0.97 on LatentSync's demo clips there, 1.11-1.31 on
    the mouth; bench_bank prints both). ``q``: another percentile than the median (bench_bank also
    prints the 95th: the worst frames, which a median hides)."""
    import numpy as np

    def dists(a, b):
        return np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0))

    d_in = dists(inp, inp)
    t = np.arange(len(inp)) if frames is None else np.asarray(frames)
    d_in[np.abs(t[:, None] - t[None]) < min_gap] = np.inf
    nn_in = d_in.min(1)
    nn_out = dists(out, inp).min(1)
    return float(np.percentile(nn_out / np.maximum(nn_in, 1e-9), q))


def stability(inp, out) -> float:
    """Mean frame-to-frame change of the output's lower face over the input's."""
    import numpy as np

    step = lambda x: np.abs(np.diff(x, axis=0)).mean()  # noqa: E731
    return float(step(out) / max(step(inp), 1e-9))


# --- weight files (test_musetalk, test_latentsync) ----------------------------------------------

class CodeOnLoad:
    """Pickled inside a checkpoint, this is more than tensors: unpickling it would call ``print``."""

    def __reduce__(self):
        return (print, ("code ran",))
