"""decord and PyAV behind one interface: same frames, reduced resolution, hazards handled."""
from __future__ import annotations

import time

import numpy as np
import pytest

from harp.data import decode
from harp.data.decode import DecodeError, FrameDecoder, decode_all


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from harp.data.synthetic import render_clip, write_mp4

    path = tmp_path_factory.mktemp("dec") / "v.mp4"
    write_mp4(path, render_clip("move_right", np.random.default_rng(0), 64, 90), 25, gop=30)
    return path


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("gop", [None, 30.0, 90.0])
def test_sparse_reads_equal_decoding_everything(video, backend, gop):
    full = decode_all(video, backend)
    assert full.shape == (90, 64, 64, 3)
    decoder = FrameDecoder(backend, timeout_s=10)
    rng = np.random.default_rng(0)
    for _ in range(6):
        idx = rng.integers(0, 90, size=8)  # any order, repeats allowed
        assert np.array_equal(decoder.read(video, idx, expected_frames=90, keyframe_interval=gop), full[idx])
    assert decoder.read(video, [5, 80], size=(24, 24)).shape == (2, 24, 24, 3)


def test_decord_bad_widths_go_to_pyav(tmp_path):
    from harp.data.synthetic import render_clip, write_mp4

    path = tmp_path / "w48.mp4"
    clip = render_clip("grow", np.random.default_rng(0), 48, 12)
    write_mp4(path, clip, 25)
    decoder = FrameDecoder("decord")
    frames = decoder.read(path, [0, 5, 11], expected_frames=12)
    assert frames.shape == (3, 48, 48, 3) and decoder.fallbacks == 1
    assert np.array_equal(frames, decode_all(path, "pyav")[[0, 5, 11]])
    decoder.read(path, [1], expected_frames=12)
    assert decoder.fallbacks == 1, "the refused size goes straight to PyAV"


def test_probe_counts_frames_and_keyframes(video):
    from harp.data.probe import probe_video

    probe = probe_video(video)
    assert probe["frames"] == 90 and 15 <= probe["keyframe_interval"] <= 30 and probe["fps"] == 25 and probe["error"] == ""


def test_backends_agree(video):
    idx = np.array([0, 13, 44, 89])
    a = FrameDecoder("decord").read(video, idx, expected_frames=90)
    b = FrameDecoder("pyav").read(video, idx, expected_frames=90)
    assert np.array_equal(a, b)


def test_count_mismatch_falls_back_to_pyav(video):
    decoder = FrameDecoder("decord")
    frames = decoder.read(video, [1, 2], expected_frames=60)  # probe says 60, decord sees 90
    assert decoder.fallbacks == 1 and frames.shape == (2, 64, 64, 3)


def test_a_hanging_decord_is_bounded_and_replaced(video, monkeypatch):
    def hang(*args):
        time.sleep(3)
        raise AssertionError("never returns in time")

    monkeypatch.setitem(decode.READERS, "decord", hang)
    decoder = FrameDecoder("decord", timeout_s=0.3)
    start = time.perf_counter()
    frames = decoder.read(video, [3, 4], expected_frames=90)
    assert time.perf_counter() - start < 2.5
    assert decoder.decord_hangs == 1 and frames.shape == (2, 64, 64, 3)
    decoder.read(video, [5], expected_frames=90)
    assert decoder.decord_hangs == decode.MAX_DECORD_HANGS
    before = decoder.fallbacks
    decoder.read(video, [6], expected_frames=90)  # decord is now off in this process
    assert decoder.fallbacks == before


def test_broken_file_raises_decode_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    for backend in ("decord", "pyav"):
        with pytest.raises(DecodeError):
            FrameDecoder(backend, timeout_s=5).read(bad, [0, 1])


def test_out_of_range_indices_are_refused(video):
    with pytest.raises(DecodeError, match="outside"):
        FrameDecoder("pyav").read(video, [0, 95], expected_frames=90)


@pytest.fixture(scope="module")
def avi_with_b_frames(tmp_path_factory):
    """Like the official UCF101/HMDB51 files: MPEG-4 part 2 in AVI, one keyframe for the whole clip,
    B-frames (decode order differs from display order, AVI stores no presentation times)."""
    import av

    from harp.data.synthetic import render_clip

    path = tmp_path_factory.mktemp("avi") / "v_Walk_g01_c01.avi"
    frames = render_clip("move_left", np.random.default_rng(1), 64, 120)
    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"g": "250", "bf": "2", "threads": "1"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("method", ["uniform", "equidistant", "random", "multi_clip"])
def test_pyav_reads_official_style_avi_like_decord(avi_with_b_frames, method):
    """PyAV is the default backend: on a long-GOP AVI with B-frames its sparse reads are the frames
    decord returns and the frames of decoding everything (native size: the same pixels)."""
    from harp.config.schema import SamplingMethod
    from harp.data.probe import probe_video
    from harp.data.sampling import SamplingParams, sample

    probe = probe_video(avi_with_b_frames)
    full = decode_all(avi_with_b_frames, "pyav")
    assert len(full) == probe["frames"] == 120
    pyav, decord = FrameDecoder("pyav", timeout_s=10), FrameDecoder("decord", timeout_s=10, fallback=False)
    params = SamplingParams(num_frames=8, interval=4, num_clips=3)
    for seed in range(4):
        idx = sample(SamplingMethod(method), 120, np.random.default_rng(seed), params).reshape(-1)
        frames = pyav.read(avi_with_b_frames, idx, expected_frames=120, keyframe_interval=probe["keyframe_interval"])
        assert np.array_equal(frames, full[idx])
        assert np.array_equal(frames, decord.read(avi_with_b_frames, idx, expected_frames=120))
    assert pyav.fallbacks == 0


def test_pyav_is_the_default_backend():
    from harp.config.schema import DataConfig
    from harp.data.dataset import DecodeSettings

    assert DataConfig().decode_backend == "pyav" == DecodeSettings().backend == FrameDecoder().backend
