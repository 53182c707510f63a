"""Acoustic features of a voice at 100 steps per second: loudness, voice activity,
formants and pitch, each normalised per voice so that they mean the same for any speaker.

Step ``k`` is centred on ``k / STEPS_PER_SECOND`` seconds (the mel timeline of
:mod:`dubber.media.audio`). Voice activity is Silero VAD (its model ships inside the
``silero-vad`` wheel); formants and pitch are Praat's (``praat-parselmouth``).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from dubber.models.threads import one_torch_thread

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
BURG_RATE = 11000  # Hz: Praat's formant analysis looks for 5 formants below half of this
STEPS_PER_SECOND = 100
HOP = SAMPLE_RATE // STEPS_PER_SECOND  # 160 samples
VAD_WINDOW = 512  # samples: Silero's window at 16 kHz (32 ms)
FORMANT_STEP = 0.02  # s: Praat's formant and pitch analyses run at 50 steps/s
LOUDNESS_FLOOR_DB = -80.0
MIN_VOICED = 20  # voiced steps with an F2 below which a voice has no median F2

_vad_lock = threading.Lock()
_vad_model = None


@dataclass(frozen=True)
class Acoustics:
    """Per 10 ms step (all shape = (n,), float32).

    Attributes:
        loudness: RMS level in dB relative to this voice's loud speech (its 95th
            percentile over speech steps): about 0 for loud speech, -20 soft, -80 silence.
        vad: Silero's speech probability in [0, 1].
        f1, f2: first and second formant, z-scored over this voice's voiced steps (0 on
            unvoiced steps, which are filled by interpolation between voiced ones).
        voiced: 1 where Praat finds a pitch, else 0.
        pitch: pitch z-scored in semitones over voiced steps (0 where unvoiced).
        level: RMS level in dB of full scale (absolute; -80 for digital silence).
        f2_median: the voice's median F2 in Hz over its voiced steps (NaN when Praat found
            fewer than ``MIN_VOICED`` of them): a measure of the vocal tract's length.
    """

    loudness: np.ndarray
    vad: np.ndarray
    f1: np.ndarray
    f2: np.ndarray
    voiced: np.ndarray
    pitch: np.ndarray
    level: np.ndarray
    f2_median: float = float("nan")

    def __len__(self) -> int:
        return len(self.loudness)


def n_steps(n_samples: int) -> int:
    """Steps covering ``n_samples`` (step k at sample k * HOP)."""
    return n_samples // HOP + 1


def loudness_db(samples: np.ndarray, steps: int) -> np.ndarray:
    """RMS level in dB over 25 ms around each step; shape = (steps,), float32."""
    x = np.pad(samples.astype(np.float32), (200, 200 + steps * HOP))
    frames = np.lib.stride_tricks.sliding_window_view(x, 400)[: steps * HOP: HOP]
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return np.maximum(20 * np.log10(rms), LOUDNESS_FLOOR_DB).astype(np.float32)


def _silero():
    """Silero VAD, loaded once (it sets torch's threads to 1 at import: ours are restored)."""
    global _vad_model
    with _vad_lock:
        if _vad_model is None:
            import torch

            threads = torch.get_num_threads()
            try:
                with warnings.catch_warnings():  # its loader uses deprecated APIs
                    warnings.simplefilter("ignore", DeprecationWarning)
                    from silero_vad import load_silero_vad

                    _vad_model = load_silero_vad()
            finally:
                torch.set_num_threads(threads)
        return _vad_model


def speech_probability(samples: np.ndarray, steps: int) -> np.ndarray:
    """Silero's speech probability at every 10 ms step; shape = (steps,), float32.

    Silero answers per 32 ms window; each step takes the window it falls in. It runs on
    one torch thread (several are slower on this small recurrent model), restored after.
    """
    import torch

    model = _silero()
    n = len(samples)
    pad = (-n) % VAD_WINDOW
    x = np.pad(samples.astype(np.float32), (0, pad + VAD_WINDOW))
    with one_torch_thread(), _vad_lock, torch.inference_mode():
        probs = _silero_windows(model, x)
    centres = np.arange(steps) * HOP
    idx = np.clip(centres // VAD_WINDOW, 0, len(probs) - 1)
    return probs[idx].astype(np.float32)


def _silero_windows(model, x: np.ndarray) -> np.ndarray:
    """Silero's probability for each ``VAD_WINDOW`` of ``x`` (a whole number of them), as
    its own window-by-window loop (``model.audio_forward``) gives it, 7x faster.

    Each window is heard with the samples just before it (zeros before the first) and the
    state its recurrent cell carried out of the window before. Only that cell depends on
    the windows before, so the front end and the convolutions run on every window at once
    and the cell steps through them as one torch LSTM with its weights. Checked against
    ``audio_forward`` (tests/test_mouth_parts.py): within 2e-6 on speech.
    """
    import torch

    net = model._model
    context = int(net.context_size_samples)
    s = np.concatenate([np.zeros(context, np.float32), x])
    frames = np.lib.stride_tricks.sliding_window_view(s, VAD_WINDOW + context)[::VAD_WINDOW]
    frames = torch.from_numpy(np.ascontiguousarray(frames[:len(x) // VAD_WINDOW]))
    features = net.encoder(net.run_extractors(frames)).squeeze(-1)  # (windows, 128)
    hidden, _ = _silero_lstm(net.decoder.rnn)(features[:, None])  # a batch of one
    return net.decoder.decoder(hidden[:, 0, :, None]).squeeze(1).mean(1).numpy()


@functools.lru_cache(maxsize=1)
def _silero_lstm(cell):
    """Silero's recurrent cell as a torch LSTM over a sequence (the same weights)."""
    import torch

    lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1])
    with torch.no_grad():
        for mine, its in ((lstm.weight_ih_l0, cell.weight_ih), (lstm.weight_hh_l0,
                          cell.weight_hh), (lstm.bias_ih_l0, cell.bias_ih),
                          (lstm.bias_hh_l0, cell.bias_hh)):
            mine.copy_(its)
    return lstm.eval()


def _zscore(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``values`` standardised over the ``ok`` steps, the others filled by interpolation."""
    out = np.zeros(len(values), np.float32)
    if ok.sum() < 3:
        return out
    v = values[ok]
    mu, sd = np.median(v), np.std(v) + 1e-6
    idx = np.arange(len(values))
    out[:] = np.interp(idx, idx[ok], (v - mu) / sd)
    return np.clip(out, -4, 4)


def formants_and_pitch(samples: np.ndarray, steps: int):
    """F1, F2 and pitch at every 10 ms step (Praat's Burg formants, autocorrelation pitch).

    Returns:
        (f1, f2, pitch) in Hz, each shape = (steps,), float64; NaN where Praat has none
        (pitch: NaN where unvoiced).
    """
    import parselmouth
    from parselmouth.praat import call

    t = np.arange(steps) / STEPS_PER_SECOND
    if len(samples) < SAMPLE_RATE // 10:  # too short for Praat's windows: nothing measured
        return (np.full(steps, np.nan),) * 3
    from scipy.signal import resample_poly

    x = samples.astype(np.float64)
    snd = parselmouth.Sound(x, SAMPLE_RATE)
    # Burg's analysis runs at twice the highest formant (BURG_RATE); Praat's own sinc
    # resampling to it was two thirds of the formants' cost, a polyphase filter costs a
    # tenth of that (the regressor refitted on it: leave-one-video-out unchanged)
    g = math.gcd(BURG_RATE, SAMPLE_RATE)
    low = parselmouth.Sound(resample_poly(x, BURG_RATE // g, SAMPLE_RATE // g),
                            float(BURG_RATE))
    formant = low.to_formant_burg(time_step=FORMANT_STEP, max_number_of_formants=5,
                                  maximum_formant=BURG_RATE / 2, window_length=0.025)
    ft = np.asarray(formant.xs(), np.float64)
    # Praat's "To Matrix" gives a formant track as one array (0 where there is none).
    f1 = call(formant, "To Matrix", 1).values[0].astype(np.float64)
    f2 = call(formant, "To Matrix", 2).values[0].astype(np.float64)
    f1[f1 <= 0] = np.nan
    f2[f2 <= 0] = np.nan
    pitch = snd.to_pitch_ac(time_step=FORMANT_STEP, pitch_floor=75.0, pitch_ceiling=500.0)
    hz = pitch.selected_array["frequency"].astype(np.float64)
    pt = np.asarray(pitch.xs(), np.float64)
    hz[hz <= 0] = np.nan

    def resample(times, values):
        if len(times) == 0:
            return np.full(steps, np.nan)
        k = np.clip(np.searchsorted(times, t), 0, len(times) - 1)
        k0 = np.clip(k - 1, 0, len(times) - 1)
        near = np.where(np.abs(times[k0] - t) < np.abs(times[k] - t), k0, k)
        out = values[near]
        out[np.abs(times[near] - t) > FORMANT_STEP] = np.nan
        return out

    return resample(ft, f1), resample(ft, f2), resample(pt, hz)


BLOCK_SECONDS = 30.0  # long audio is measured in blocks of at most this (bounded memory)
SEARCH_SECONDS = 2.0  # a block ends at the quietest 10 ms step within this of its limit


def blocks(samples: np.ndarray, seconds: float | None = None) -> list[tuple[int, int]]:
    """Cut long audio into blocks at quiet points, each starting on a step (HOP) boundary.

    Returns:
        consecutive (start, stop) sample ranges covering ``samples``.
    """
    n = len(samples)
    size = int((seconds or BLOCK_SECONDS) * SAMPLE_RATE) // HOP * HOP
    search = int(SEARCH_SECONDS * SAMPLE_RATE) // HOP
    out, start = [], 0
    while n - start > size:
        lo = start + size - search * HOP
        seg = samples[lo: start + size].astype(np.float64)
        energy = (seg[: len(seg) // HOP * HOP].reshape(-1, HOP) ** 2).sum(1)
        cut = lo + int(np.argmin(energy)) * HOP
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


def _per_block(samples: np.ndarray, fn) -> list[np.ndarray]:
    """``fn(block, n_steps(len(block)))`` (a tuple of per-step arrays) over the blocks of
    ``samples``, joined: memory does not grow with the audio's length."""
    steps = n_steps(len(samples))
    parts: list[list[np.ndarray]] = []
    for a, b in blocks(samples):
        m = n_steps(b - a) if b == len(samples) else (b - a) // HOP
        block = samples[a:b]
        for k, v in enumerate(fn(block, n_steps(len(block)))):
            if k == len(parts):
                parts.append([])
            parts[k].append(v[:m])
    return [np.concatenate(p)[:steps] for p in parts]


def voice_activity(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loudness (dBFS) and Silero's speech probability per step (the cheap part, which
    says where the recogniser need not listen).

    Returns:
        (level, vad), each shape = (n_steps(len(samples)),), float32.
    """
    level = loudness_db(samples, n_steps(len(samples)))
    (vad,) = _per_block(samples, lambda x, n: (speech_probability(x, n),))
    return level, vad


def formant_tracks(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F1, F2 and pitch (Hz) per step, NaN where Praat has none (:func:`formants_and_pitch`
    block by block)."""
    f1, f2, hz = _per_block(samples, formants_and_pitch)
    return f1, f2, hz


def measure(samples: np.ndarray):
    """Loudness (dBFS), voice activity, F1, F2 and pitch (Hz) per step, not normalised;
    block by block, so memory does not grow with the audio's length.

    Returns:
        (level, vad, f1, f2, hz), each shape = (n_steps(len(samples)),).
    """
    return (*voice_activity(samples), *formant_tracks(samples))


def acoustics(samples: np.ndarray, activity: tuple[np.ndarray, np.ndarray] | None = None
              ) -> Acoustics:
    """Every acoustic feature of 16 kHz mono speech, normalised per voice.

    Args:
        samples: shape = (S,), float32, 16 kHz mono.
        activity: :func:`voice_activity` of ``samples`` when the caller has it.
    """
    loud, vad = activity if activity is not None else voice_activity(samples)
    f1, f2, hz = formant_tracks(samples)
    voiced = np.isfinite(hz) & (loud > LOUDNESS_FLOOR_DB + 1)
    speech = (vad > 0.5) & (loud > LOUDNESS_FLOOR_DB + 1)
    ref = np.percentile(loud[speech], 95) if speech.sum() >= 5 else float(loud.max())
    loud_rel = np.maximum(loud - ref, LOUDNESS_FLOOR_DB).astype(np.float32)
    semis = 12 * np.log2(np.where(voiced, hz, 100.0) / 100.0)
    with_f2 = voiced & np.isfinite(f2)
    f2_median = float(np.median(f2[with_f2])) if with_f2.sum() >= MIN_VOICED else float("nan")
    return Acoustics(
        loudness=loud_rel,
        vad=vad,
        f1=_zscore(np.nan_to_num(f1), voiced & np.isfinite(f1)),
        f2=_zscore(np.nan_to_num(f2), voiced & np.isfinite(f2)),
        voiced=voiced.astype(np.float32),
        pitch=_zscore(semis, voiced),
        level=loud,
        f2_median=f2_median,
    )
