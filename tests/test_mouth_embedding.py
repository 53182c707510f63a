"""The driver's speech embedding (dubber.mouth.embedding): Google's speech_embedding network
from the openwakeword wheel, run in torch, against onnxruntime on the same files; its
timeline; long audio in chunks; and a clear error without the model files."""

from __future__ import annotations

import numpy as np
import pytest

from dubber.errors import WeightsError
from dubber.media.audio import load_audio
from dubber.mouth import embedding as E
from dubber.mouth.features import N_BASE, N_EMBEDDING, frame_features, silence_steps
from dubber.mouth.whisper import N_WHISPER
from tests.helpers import SPEECH

needs_speech = pytest.mark.skipif(not SPEECH.is_dir(), reason="../shared/media is not present")


@pytest.fixture(scope="module")
def model():
    return E.speech_embedding()


@pytest.fixture(scope="module")
def speech():
    """en_radio_8s, then 1 s of digital silence."""
    x = load_audio(SPEECH / "en_radio_8s.wav")
    return np.concatenate([x, np.zeros(16000, np.float32)])


@needs_speech
def test_the_layer_is_the_networks_own(model, speech):
    """Ours (torch) against onnxruntime running the wheel's two files, cut at the layer."""
    ort = pytest.importorskip("onnxruntime")
    import onnx

    folder = E.model_dir()
    mel = ort.InferenceSession(str(folder / "melspectrogram.onnx"))
    x = speech[:16000 * 4]
    pcm = np.clip(x, -1, 1) * 32767  # as 16-bit samples (this clip peaks above full scale)
    ref_mel = mel.run(None, {"input": pcm[None].astype(np.float32)})[0]
    ref_mel = ref_mel.squeeze() / 10 + 2  # openWakeWord's scaling
    ours_mel = model.log_mel(x)[0, 0].numpy()
    assert ours_mel.shape == ref_mel.shape
    assert np.abs(ours_mel - ref_mel).max() < 1e-3

    net = onnx.load(str(folder / "embedding_model.onnx"))
    net.graph.output.extend([onnx.helper.make_tensor_value_info(E.LAYER, 1, None)])
    session = ort.InferenceSession(net.SerializeToString())
    window = ref_mel[100:176][None, :, :, None].astype(np.float32)  # the model's 76 frames
    ref = session.run([E.LAYER], {"input_1": window})[0]  # (1, 96, 10, 2)
    ref = ref[0].transpose(1, 0, 2).reshape(ref.shape[2], -1)
    import torch

    ours = model._net(torch.from_numpy(np.ascontiguousarray(ours_mel[100:176]))[None, None])
    assert ours.shape == (ref.shape[0], N_EMBEDDING)
    assert np.abs(ours.numpy() - ref).max() < 1e-3 * np.abs(ref).max()


@needs_speech
def test_every_step_on_the_acoustics_timeline(model, speech):
    steps, silence = model(speech)
    assert steps.shape == (int(np.ceil(len(speech) / 160)), N_EMBEDDING)
    assert silence.shape == (N_EMBEDDING,) and np.isfinite(steps).all()
    # delayed by 0.48 s (48 steps, a whole number of the layer's strides): the same
    # embedding 48 steps later, away from the ends
    later, _ = model(np.concatenate([np.zeros(7680, np.float32), speech]))
    assert np.allclose(later[48 + 50:48 + 800], steps[50:800], atol=1e-3)
    # delayed by 0.5 s (between two outputs, interpolated): best matched 50 steps later
    later, _ = model(np.concatenate([np.zeros(8000, np.float32), speech]))
    r = {lag: np.corrcoef(later[lag + 50:lag + 800].ravel(), steps[50:800].ravel())[0, 1]
         for lag in range(40, 61)}
    assert max(r, key=r.get) == 50 and r[50] > 0.9
    # the silent second sounds like silence, the talk does not
    talk = np.linalg.norm(steps[100:750] - silence, axis=1)
    quiet = np.linalg.norm(steps[-40:] - silence, axis=1)
    assert np.median(quiet) < 0.1 * np.median(talk)


@needs_speech
def test_long_audio_in_chunks_is_one_pass(model, speech, monkeypatch):
    whole, silence = model(speech)
    monkeypatch.setattr(E, "CHUNK", 7)  # outputs per pass
    monkeypatch.setattr(E, "MEL_BLOCK", 101)  # mel frames per STFT
    chunked, silence2 = model(speech)
    assert np.allclose(chunked, whole, atol=1e-4) and np.allclose(silence, silence2)


def test_the_silence_row_fills_frames_outside_the_audio():
    steps = np.random.default_rng(0).normal(size=(300, N_BASE)).astype(np.float32)
    mark = np.full(N_EMBEDDING, 7.0, np.float32)
    heard = np.full(N_WHISPER, -3.0, np.float32)
    x = frame_features(steps, np.array([-10.0, 1.5]), silence=silence_steps(mark, heard))
    y = frame_features(steps, np.array([-10.0, 1.5]))
    assert np.allclose(x[1], y[1])  # inside: the steps'
    block = x[0, :N_BASE]  # the first context offset, far before the audio
    e = N_BASE - N_WHISPER
    assert np.allclose(block[e - N_EMBEDDING:e], 7.0) and np.allclose(block[e:], -3.0)
    assert np.allclose(y[0, e - N_EMBEDDING:N_BASE], 0)


def test_tiny_audio(model):
    steps, silence = model(np.zeros(100, np.float32))
    assert steps.shape == (1, N_EMBEDDING) and np.isfinite(steps).all()
    assert np.allclose(steps[0], silence, atol=1e-4)  # nothing but silence in it


def test_without_the_model_files_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match="pip install --no-deps openwakeword==0.5.1"):
        E.model_dir()
    (tmp_path / "melspectrogram.onnx").write_bytes(b"not a model")
    (tmp_path / "embedding_model.onnx").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="cannot read the speech embedding"):
        E.SpeechEmbedding(tmp_path)
