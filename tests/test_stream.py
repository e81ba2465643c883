"""The streaming pieces under the runner: windowed tracking joined without a seam, tracks moved to
another frame size or a region, the background reader and writer, the chunked video writer at an
exact rate, and the streamed runner on a real clip at 29.97 fps."""

import threading
import time
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from comfyui_lipsync.lipsync_models import composite, media, stream_io, stream_track, video_out
from comfyui_lipsync.lipsync_models.crops import crop_faces
from comfyui_lipsync.lipsync_models.errors import InputError, NoFaceError
from comfyui_lipsync.lipsync_models.face import track_faces


@pytest.fixture(scope="module")
def grid_frames(grid_dir):
    return media.read_video(str(grid_dir / "bbaf2n.mpg"))[0]


def _steps(track) -> torch.Tensor:
    """Largest frame-to-frame change of the crop transform's translation (x, y), crop px."""
    t = track.transform[:, :, 2].double()
    return (t[1:] - t[:-1]).abs().amax(0)


def test_windows_join_without_a_seam(grid_frames):
    whole = track_faces(grid_frames.float() / 255)
    tracker = stream_track.WindowTracker(window=30, overlap=10)  # three windows over 75 frames
    for s in range(0, 75, 16):
        tracker.push(grid_frames[s:s + 16])
    joined = tracker.finish()
    assert joined.num_frames == 75 and bool(joined.found.all())
    assert "3 overlapping windows" in joined.report
    # no jump where one window takes over from the next: the joined track moves little more from
    # frame to frame than the whole clip's track does (x / y measured 0.76 / 2.05 px against 0.64 /
    # 1.23 px with these short windows; margin: 1.5 x plus half a pixel; a window pasted without the
    # cross-fade jumps by up to 8 px, the windows' disagreement), and its mouth stays near the whole
    # clip's (median 0.49 px measured)
    assert bool((_steps(joined) <= 1.5 * _steps(whole) + 0.5).all()), (_steps(joined), _steps(whole))
    mouth = (joined.mouth[:, :2] - whole.mouth[:, :2]).norm(dim=-1)
    assert float(mouth.median()) < 2.0, float(mouth.median())


def test_a_clip_up_to_whole_clip_frames_is_tracked_in_one_window(grid_frames):
    """A clip of up to WHOLE_CLIP frames (the count its file states) is one window, so no frame is
    tracked twice; a longer one takes WINDOW-frame windows."""
    assert stream_track.window_for(260) == 260 and stream_track.window_for(stream_track.WHOLE_CLIP) == 350
    assert stream_track.window_for(40) == stream_track.window_for(351) == stream_track.window_for(0) == 200
    frames = grid_frames.repeat(4, 1, 1, 1)[:260]
    for window, windows in ((stream_track.window_for(260), 1), (stream_track.WINDOW, 2)):
        tracker = stream_track.WindowTracker(window=window)
        for a in range(0, 260, 50):
            tracker.push(frames[a:a + 50])
        assert f"tracked in {windows} overlapping windows" in tracker.finish().report


def test_a_window_without_a_face_passes_through(grid_frames):
    black = torch.zeros((60,) + tuple(grid_frames.shape[1:]), dtype=torch.uint8)
    clip = torch.cat([grid_frames, black, grid_frames])
    tracker = stream_track.WindowTracker(window=50, overlap=10)
    for s in range(0, len(clip), 25):
        tracker.push(clip[s:s + 25])
    tr = tracker.finish()
    found = tr.found.numpy()
    assert tr.num_frames == 210
    assert found[:60].all() and found[150:].all()
    assert not found[85:125].any()  # the middle of the black span, whatever window it falls in
    assert "no face in" in tr.report and "pass through unchanged" in tr.report
    # transforms stay invertible everywhere (held from the neighbours), so crops can still be cut
    assert torch.isfinite(tr.transform).all()
    # a part of the track carries its own frames' measures (SyncScore reads them on the scored tail)
    tail = tr.frames(slice(150, 210))
    assert tail.num_frames == 60 and tail.extras["contrast"].shape == (60,)
    assert torch.equal(tail.extras["contrast"], tr.extras["contrast"][150:])
    with pytest.raises(NoFaceError, match="no face found in any frame"):
        t2 = stream_track.WindowTracker(window=50, overlap=10)
        t2.push(black)
        t2.finish()
    with pytest.raises(InputError, match="overlap"):
        stream_track.WindowTracker(window=20, overlap=10)


def test_scaled_track_cuts_the_same_crops(grid_frames):
    f = grid_frames[:8].float() / 255
    tr = track_faces(f)
    big = torch.nn.functional.interpolate(f.permute(0, 3, 1, 2), scale_factor=2, mode="bilinear",
                                          align_corners=False).permute(0, 2, 3, 1).contiguous()
    tr2 = stream_track.scale_track(tr, (720, 576))
    assert tr2.frame_size == (576, 720)
    a, b = crop_faces(f, tr), crop_faces(big, tr2)
    # same face region: only the resampling differs (an off-by-half-pixel mapping gives 0.02+)
    assert float((a - b).abs().mean()) < 0.01, float((a - b).abs().mean())
    assert stream_track.track_size(1920, 1080) == (640, 360)
    assert stream_track.track_size(1080, 1920) == (360, 640)
    assert stream_track.track_size(360, 288) == (360, 288)


def test_region_gives_the_whole_frame_result(grid_frames):
    """Crops and the composite on the face region equal those on the whole (upscaled) frame."""
    f = torch.nn.functional.interpolate(grid_frames[:6].float().permute(0, 3, 1, 2) / 255, scale_factor=3,
                                        mode="bilinear", align_corners=False).permute(0, 2, 3, 1).contiguous()
    tr = stream_track.scale_track(track_faces(grid_frames[:6].float() / 255), (1080, 864))
    x0, y0, x1, y1 = stream_track.face_region(tr)
    assert (x1 - x0) * (y1 - y0) < 0.5 * 1080 * 864  # the point: a small part of the frame
    part = stream_track.in_region(tr, (x0, y0, x1, y1))
    sub = f[:, y0:y1, x0:x1].contiguous()
    crops = crop_faces(f, tr)
    assert float((crop_faces(sub, part) - crops).abs().max()) < 1e-4
    gen = crops.flip(1).contiguous()  # a different mouth picture, so the composite changes pixels
    whole = composite.composite(f, gen, tr)
    pasted = f.clone()
    pasted[:, y0:y1, x0:x1] = composite.composite(sub, gen, part)
    assert float((whole - f).abs().amax()) > 0.1
    assert float((whole - pasted).abs().max()) < 1e-4


def test_background_reader_and_writer_keep_order_and_raise():
    assert list(stream_io.background(iter(range(50)), depth=2)) == list(range(50))

    def bad():
        yield 1
        raise InputError("reader: broken")

    with pytest.raises(InputError, match="reader: broken"):
        list(stream_io.background(bad()))
    got = []
    sink = stream_io.BackgroundSink(got.append, depth=2)
    for i in range(30):
        sink.put(i)
    sink.close()
    assert got == list(range(30))

    def fail(x):
        raise InputError(f"writer: cannot take {x}")

    sink = stream_io.BackgroundSink(fail)
    with pytest.raises(InputError, match="writer: cannot take"):
        for i in range(100):
            sink.put(i)
        sink.close()

    # abort (the caller failed): the item being consumed finishes, the waiting ones are dropped, and the
    # thread has ended when abort returns (the caller then closes the file the thread wrote to)
    started, done = threading.Event(), []

    def slow(x):
        started.set()
        time.sleep(0.3)
        done.append(x)

    sink = stream_io.BackgroundSink(slow, depth=2)
    for i in range(3):
        sink.put(i)
    started.wait(5)
    sink.abort()
    assert not sink._thread.is_alive() and done == [0]


@pytest.mark.parametrize("rate", [Fraction(30000, 1001), Fraction(24000, 1001), Fraction(16), Fraction(60)])
def test_chunked_writer_keeps_the_exact_rate_and_audio(tmp_path, rate):
    n, sr = 45, 48000
    path = tmp_path / "x.mp4"
    t = np.arange(int(round(n * sr / rate)) + 5000) / sr
    wave = torch.tensor(0.3 * np.sin(2 * np.pi * 440 * t), dtype=torch.float32)[None]
    w = video_out.VideoWriter(str(path), (64, 48), rate, {"waveform": wave[None], "sample_rate": sr}, num_frames=n)
    for s in range(0, n, 7):
        w.write(torch.full((min(7, n - s), 48, 64, 3), s / n))
    w.close()
    info = media.probe_video(str(path))
    assert info.rate == rate and info.frames == n
    got = sum(f.shape[0] for _, f, _ in media.iter_video(str(path), chunk=10))
    assert got == n
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        dur = float(a.duration * a.time_base)
    assert abs(dur - n / float(rate)) < 0.03, (dur, n / float(rate))  # AAC frames: 21 ms granularity


def test_scored_tail_is_shrunk_like_an_area_filter(grid_frames):
    """The output's scored tail is shrunk on uint8 with OpenCV (no float copy of the full frames):
    at an integer factor it is the mean of each 3x3 block, as the float area filter gives, to one
    grey level of rounding; at another size both filters stay within a few levels of each other."""
    from comfyui_lipsync.lipsync_runner import stream

    frames = grid_frames[:6]  # (6, 288, 360, 3) uint8
    small = stream._shrink_u8(frames, (120, 96))
    assert small.dtype == torch.uint8 and tuple(small.shape) == (6, 96, 120, 3)
    block = frames.double().view(6, 96, 3, 120, 3, 3).mean((2, 4))
    assert float((small.double() - block).abs().max()) <= 0.5 + 1e-9
    other = stream._shrink_u8(frames, (200, 160))
    ref = stream._resize_u8(frames, (200, 160))
    assert float((other.int() - ref.int()).abs().float().mean()) < 2.0


def test_planes_are_read_as_the_decoder_gives_them(grid_dir):
    """iter_yuv hands over each frame's 4:2:0 planes (rows cut from their padded line size) in
    chunks, the same bytes PyAV's own conversion to an array gives, frame for frame."""
    path = str(grid_dir / "bbaf2n.mpg")
    with av.open(path) as c:
        ref = np.stack([f.to_ndarray() for f in c.decode(video=0)])
    chunks = list(media.iter_yuv(path, chunk=7))
    assert [first for first, _, _ in chunks] == list(range(0, len(ref), 7))
    got = np.concatenate([a for _, a, _ in chunks])
    assert got.shape == ref.shape == (len(ref), 288 * 3 // 2, 360)
    assert (got == ref).all()


def test_a_frames_region_converts_as_the_whole_frame(grid_dir):
    """yuv.region_rgb converts a box of a decoded frame alone (grown to whole chroma blocks, odd
    edges included) into the very RGB the whole frame's conversion gives there."""
    from comfyui_lipsync.lipsync_runner import yuv

    with av.open(str(grid_dir / "bbaf2n.mpg")) as c:
        for k, frame in enumerate(c.decode(video=0)):
            whole = frame.to_ndarray(format="rgb24")
            for box in ((101, 51, 181, 131), (0, 0, 360, 288), (7, 3, 8, 4), (120, 90, 240, 200)):
                x0, y0, x1, y1 = box
                got = yuv.region_rgb(frame, box)
                assert got.shape == (y1 - y0, x1 - x0, 3) and (got == whole[y0:y1, x0:x1]).all(), (k, box)
            if k == 3:
                break


def test_changed_pixels_only_are_written_back(grid_dir):
    """put_changed writes the Y of the pixels whose RGB changed and the U, V of their 2x2 blocks;
    every other byte of the frame stays."""
    from comfyui_lipsync.lipsync_runner import yuv

    frame = next(media.iter_yuv(str(grid_dir / "bbaf2n.mpg"), chunk=1))[1][0]
    box = yuv.even_box((101, 51, 181, 131), 360, 288)
    assert box == (100, 50, 182, 132)
    old = yuv.to_rgb(yuv.region(frame, box))
    new = old.copy()
    new[20:30, 11:17] = 255 - new[20:30, 11:17]  # a block at odd x: its edge splits 2x2 chroma blocks
    out = frame.copy()
    assert yuv.put_changed(out, box, old, old) == 0 and (out == frame).all()
    assert yuv.put_changed(out, box, old, new) == 60
    y0, u0, v0 = yuv.planes(frame)
    y1, u1, v1 = yuv.planes(out)
    moved = y1 != y0
    assert moved[70:80, 111:117].mean() > 0.9 and not moved[:70].any() and not moved[80:].any()
    assert not moved[:, :111].any() and not moved[:, 117:].any()
    cmoved = (u1 != u0) | (v1 != v0)
    assert not cmoved[:35].any() and not cmoved[40:].any() and not cmoved[:, :55].any() and not cmoved[:, 59:].any()
    back = yuv.to_rgb(yuv.region(out, box)).astype(int)[20:30, 11:17]  # reads as the new pixels, not the old
    to_new, to_old = (np.abs(back - x[20:30, 11:17]).mean() for x in (new, old))
    assert to_new < 12 and to_old > 4 * to_new, (to_new, to_old)


def test_runner_scores_as_the_node_without_its_plot(grid_dir):
    """The runner's SyncScore (no plot drawn) answers what the node answers: offset, confidence and
    report, on a real clip with its own sound."""
    from comfyui_lipsync import NODE_CLASS_MAPPINGS
    from comfyui_lipsync.lipsync_runner import cli, stream

    path = str(grid_dir / "bbaf2n.mpg")
    frames, fps, (wave, sr) = media.read_video(path)
    images = frames[:50].float() / 255
    given = {"images": images, "fps": fps, "face_track": track_faces(images),
             "audio": {"waveform": wave[None, :, :int(50 / fps * sr)], "sample_rate": sr}}
    cls = NODE_CLASS_MAPPINGS["LipSyncSyncScore"]
    node, _ = cli.call_node(cls, **given)
    ours = stream.unplotted_score(cls, given, "cpu")
    assert ours is not None and abs(node["offset_frames"]) <= 1  # the clip's own sound: in sync
    for k in ("offset_frames", "offset_ms", "confidence", "report"):
        assert ours[k] == node[k], k


def test_composite_in_place_without_the_scan_gives_the_same_frames(grid_frames):
    """Composite writing into its own input (out=frames, as the runner's last pass does) without
    scanning pixels it knows are finite gives the very frames of the default call."""
    f = grid_frames[:6].float() / 255
    tr = track_faces(f)
    gen = crop_faces(f, tr).flip(1).contiguous()  # another mouth picture: pixels change
    ref = composite.composite(f, gen, tr)
    g = f.clone()
    got = composite.composite(g, gen, tr, out=g, check=False)
    assert got is g and torch.equal(got, ref)
    assert float((ref - f).abs().max()) > 0.1
    with pytest.raises(InputError, match="out must be like the images"):
        composite.composite(f, gen, tr, out=f[:3])


class _FlippedMouths:
    """A generator stand-in for the render passes: every frame's crop, cut from the float copy of its
    frames, upside down (another mouth picture, so Composite changes pixels)."""

    device = torch.device("cpu")

    def generate(self, first, frames, part):
        f = frames.float() / 255 if frames.dtype == torch.uint8 else frames
        return crop_faces(f, part).flip(1).contiguous()


def _render_inputs(grid_dir):
    frames = next(media.iter_video(str(grid_dir / "bbaf2n.mpg"), chunk=6))[1]
    yuv_frames = next(media.iter_yuv(str(grid_dir / "bbaf2n.mpg"), chunk=6))
    return frames, yuv_frames, track_faces(frames.float() / 255)


def test_render_chunk_gives_composite_of_the_float_frames_rounded(grid_dir):
    """The runner's RGB pass (only Composite's windows made float) gives the frames Composite gives on
    the float copy of the whole face region, rounded to nearest: byte for byte."""
    from comfyui_lipsync.lipsync_runner import stream

    frames, _, tr = _render_inputs(grid_dir)
    x0, y0, x1, y1 = stream_track.face_region(tr)
    part = stream_track.in_region(tr, (x0, y0, x1, y1))
    f = frames[:, y0:y1, x0:x1].float() / 255
    want = frames.clone()
    want[:, y0:y1, x0:x1] = (composite.composite(f, _FlippedMouths().generate(0, f, part), part) * 255 + 0.5
                             ).clamp(0, 255).to(torch.uint8)
    got = stream.render_chunk(_FlippedMouths(), tr, 0, frames.clone(), {})
    assert torch.equal(got, want)
    assert int((got != frames).any(-1).sum()) > 1000  # mouths changed


def test_render_chunk_yuv_writes_back_what_the_whole_region_would(grid_dir):
    """The planar pass converts back around Composite's windows only: the same bytes as converting
    back the changes over the whole face region."""
    from comfyui_lipsync.lipsync_runner import stream, yuv

    _, (_, planes, space), tr = _render_inputs(grid_dir)
    n, h, w = planes.shape[0], planes.shape[1] * 2 // 3, planes.shape[2]
    box = yuv.even_box(stream_track.face_region(tr), w, h)
    part = stream_track.in_region(tr, box)
    rgb = np.stack([yuv.to_rgb(yuv.region(p, box), space) for p in planes])
    f = torch.from_numpy(rgb).float() / 255
    out = ((composite.composite(f, _FlippedMouths().generate(0, f, part), part) * 255 + 0.5)
           .clamp(0, 255).to(torch.uint8).numpy())
    want = planes.copy()
    changed = sum(yuv.put_changed(want[i], box, rgb[i], out[i], space) for i in range(n))
    got = planes.copy()
    assert stream.render_chunk_yuv(_FlippedMouths(), tr, 0, got, {}, space) == changed > 1000
    assert (got == want).all()


def test_planes_keep_a_bt709_clips_colours(tmp_path, grid_frames):
    """A clip that states BT.709: its region is made RGB as the decoder's own conversion makes it
    (BT.601's would be off by up to 17 levels), and new pixels go back in BT.709, so they read back
    as written."""
    from comfyui_lipsync.lipsync_runner import yuv

    path = str(tmp_path / "bt709.mp4")
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 360, 288, "yuv420p"
        s.codec_context.colorspace, s.codec_context.color_range = 1, 1
        for i, f in enumerate(grid_frames[:3].numpy()):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.colorspace = 1
            vf = vf.reformat(format="yuv420p")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    # the runner keeps such a clip in its planes and its output states the same matrix and range
    assert media.probe_video(path).plain_yuv420 and media.probe_video(path).colour == {"colorspace": 1, "color_range": 1}
    with av.open(path) as c:
        decoded = next(c.decode(video=0)).to_ndarray(format="rgb24")
    _, planes, space = next(media.iter_yuv(path, chunk=1))
    assert space == 1
    box = (100, 50, 182, 132)
    region = yuv.to_rgb(yuv.region(planes[0], box), space)
    assert (region == decoded[50:132, 100:182]).all()
    assert np.abs(yuv.to_rgb(yuv.region(planes[0], box)).astype(int) - region).max() > 8  # BT.601 differs
    new = region.copy()
    new[20:40, 20:40] = (200, 60, 40)  # a saturated patch: where the two matrices differ most
    frame = planes[0].copy()
    yuv.put_changed(frame, box, region, new, space)
    back = yuv.to_rgb(yuv.region(frame, box), space).astype(int)[22:38, 22:38]
    assert np.abs(back - (200, 60, 40)).max() <= 3
