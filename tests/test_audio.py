"""Audio loading, the log-mel, and the frame-timestamp -> mel-window timeline."""

from __future__ import annotations

import wave
from fractions import Fraction

import numpy as np
import pytest
import torch

from dubber.errors import InputError
from dubber.media.audio import (EXPERT_WINDOW_STEPS, GENERATOR_WINDOW_STEPS, HOP_LENGTH,
                                N_MELS, SAMPLE_RATE, SILENCE_LOG_MEL, AudioTrack, load_audio,
                                log_mel, mel_filters, mel_windows)
from dubber.media.decode import read_chunks
from dubber.media.probe import probe
from tests.helpers import CLIPS, ffmpeg, make_tone, needs_media, speech_files


@needs_media
@pytest.mark.parametrize("path", speech_files(), ids=lambda p: p.name)
def test_every_speech_file_loads_to_16k_mono_float(path):
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        expected = float(s.duration * s.time_base) if s.duration else c.duration / 1e6
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / SAMPLE_RATE - expected) < 0.06
    assert 0.01 < np.abs(samples).max() < 4  # real speech, not silence, not garbage
    with AudioTrack(path) as track:
        assert track.n_samples == len(samples)
        assert np.array_equal(track.samples(1000, 2000), samples[1000:2000])
        assert track.info.sample_rate > 0 and track.info.channels in (1, 2)


def test_resampling_keeps_pitch_and_downmixes_stereo(tmp_path):
    tone = make_tone(tmp_path / "a440.wav", 1.0, rate=44100, freq=440, channels=2)
    x = load_audio(tone)
    assert len(x) == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(x) - 440) < 2


def test_audio_track_deletes_its_file_and_reads_zeros_outside(tmp_path):
    tone = make_tone(tmp_path / "t.wav", 0.5)
    with AudioTrack(tone) as track:
        path = track._file
        out = track.samples(-100, 100)
        assert not out[:100].any() and out[100:].any()
        assert not track.samples(track.n_samples, track.n_samples + 50).any()
    import os
    assert not os.path.exists(path)


def test_audio_errors(tmp_path, clip_320):
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(InputError):
        load_audio(junk)
    silent_video = tmp_path / "noaudio.mp4"
    ffmpeg("-i", str(clip_320), "-an", "-c", "copy", str(silent_video))
    with pytest.raises(InputError, match="no audio stream"):
        load_audio(silent_video)
    empty = tmp_path / "empty.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-frames:a", "0", str(empty))
    with pytest.raises(InputError, match="no samples"):
        AudioTrack(empty)


@pytest.mark.parametrize("picture_after", [0.2, -0.2])
def test_a_films_own_sound_is_read_as_it_plays_with_its_first_frame(tmp_path, clip_320,
                                                                     picture_after):
    """A click 0.5 s into the sound; the picture starts 0.2 s after the sound, or the sound
    0.2 s after the picture. Read as the film's own sound, the click comes where it plays
    against the first frame; read as a dub, where it is in the stream."""
    click = tmp_path / "click.wav"
    x = np.zeros(16000, np.int16)
    x[8000:8064] = 20000
    with wave.open(str(click), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(x.tobytes())
    film = tmp_path / "film.mov"
    picture, sound = (["-itsoffset", str(abs(picture_after))], []) if picture_after > 0 \
        else ([], ["-itsoffset", str(abs(picture_after))])
    ffmpeg(*picture, "-i", str(clip_320), *sound, "-i", str(click), "-map", "0:v",
           "-map", "1:a", "-c:v", "copy", "-c:a", "pcm_s16le", str(film))
    own = load_audio(film, from_picture=True)
    stream = load_audio(film)
    assert np.argmax(np.abs(own)) / 16000 == pytest.approx(0.5 - picture_after, abs=0.002)
    assert np.argmax(np.abs(stream)) / 16000 == pytest.approx(0.5, abs=0.002)
    with AudioTrack(film, from_picture=True) as track:
        assert np.array_equal(track.samples(0, track.n_samples), own)


def test_a_millisecond_at_48_khz_is_a_millisecond(tmp_path):
    # 48 samples never left the resampler's filter: "an audio stream with no samples"
    blip = tmp_path / "blip.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-af",
           "atrim=end_sample=48", str(blip))
    assert len(load_audio(blip)) == SAMPLE_RATE // 1000
    with AudioTrack(blip) as track:
        assert track.n_samples == SAMPLE_RATE // 1000


def test_log_mel_shape_silence_and_pitch():
    silence = np.zeros(SAMPLE_RATE, np.float32)
    mel = log_mel(silence)
    assert mel.shape == (N_MELS, SAMPLE_RATE // HOP_LENGTH + 1)
    assert torch.all(mel == SILENCE_LOG_MEL)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    low, high = (log_mel(np.sin(2 * np.pi * f * t).astype(np.float32)) for f in (300, 3000))
    assert low[:, 50].argmax() < high[:, 50].argmax()
    # The filterbank covers the spectrum with every band non-empty.
    assert (mel_filters().sum(1) > 0).all()


class ClickTrack:
    """A silent track with 5 ms bursts at given times; reads by range like AudioTrack."""

    def __init__(self, times):
        self.starts = [int(round(float(t) * SAMPLE_RATE)) for t in times]

    def samples(self, start, stop):
        out = np.zeros(stop - start, np.float32)
        rng = np.random.default_rng(0)
        for s in self.starts:
            a, b = max(s - 40, start), min(s + 40, stop)
            if b > a:
                out[a - start:b - start] = rng.uniform(-1, 1, b - a)
        return out


@pytest.mark.parametrize("rate", [Fraction(24000, 1001), Fraction(25), Fraction(30000, 1001),
                                  Fraction(30)], ids=["23.976", "25", "29.97", "30"])
def test_each_frame_hears_its_own_moment_over_an_hour(rate):
    """A click at a frame's exact timestamp lands in the centre step of that frame's window,
    at the start of a film and an hour in (no drift at NTSC rates)."""
    frames = [0, 1, 17, int(3600 * rate), int(3600 * rate) + 1]
    times = [Fraction(n) / rate for n in frames]
    track = ClickTrack(times[2::2])  # clicks at frames 17 and the hour mark
    windows = mel_windows(track, times, GENERATOR_WINDOW_STEPS)
    assert windows.shape == (5, N_MELS, GENERATOR_WINDOW_STEPS)
    energy = windows.mean(1)  # (frames, steps)
    centre = GENERATOR_WINDOW_STEPS // 2
    for k in (2, 4):
        assert int(energy[k].argmax()) == centre, (rate, frames[k])
    # The frame before hears the same click later in its window, by one frame's worth.
    shift = int(energy[3].argmax())
    assert abs((shift - centre) - 100 / float(rate)) <= 1


def test_windows_equal_slices_of_the_whole_spectrogram(tmp_path):
    tone = make_tone(tmp_path / "t.wav", 2.0, rate=16000, freq=500)
    x = load_audio(tone)
    full = log_mel(x)
    times = [Fraction(n, 25) for n in range(13, 37)]
    w = mel_windows(x, times, EXPERT_WINDOW_STEPS)
    for t, win in zip(times, w):
        c = round(t * 100)
        assert torch.allclose(win, full[:, c - 50:c + 50], atol=1e-4)


def test_windows_past_the_dub_end_are_silence():
    x = np.ones(SAMPLE_RATE, np.float32)  # 1 s of dub
    w = mel_windows(x, [Fraction(3), Fraction(5, 2)], GENERATOR_WINDOW_STEPS)
    assert torch.all(w == SILENCE_LOG_MEL)


def test_variable_frame_rate_windows_follow_real_timestamps(gen):
    from tests.test_probe import make_vfr_clip
    info = probe(make_vfr_clip(gen))
    times = np.concatenate([c.times for c in read_chunks(info, chunk_frames=16)])
    steps = np.diff(times)
    assert steps.min() < 0.05 < steps.max()  # 25 fps then 10 fps
    picked = [times[5], times[-3]]
    windows = mel_windows(ClickTrack(picked), times, GENERATOR_WINDOW_STEPS).mean(1)
    centre = GENERATOR_WINDOW_STEPS // 2
    for k in (5, len(times) - 3):
        assert int(windows[k].argmax()) == centre


@needs_media
def test_real_clip_timestamps_drive_windows(tmp_path):
    info = probe(CLIPS / "kim_1080p30_en.mp4", scan=True)
    chunk = next(iter(read_chunks(info, chunk_frames=8, full=False, analysis_scale=0.1)))
    with AudioTrack(CLIPS / "kim_1080p30_en.mp4") as track:
        w = mel_windows(track, chunk.times)
    assert w.shape == (8, N_MELS, GENERATOR_WINDOW_STEPS)
    assert torch.isfinite(w).all() and (w > SILENCE_LOG_MEL).any()
