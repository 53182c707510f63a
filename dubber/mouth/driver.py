"""The driver: any speech -> a :class:`~dubber.mouth.track.MouthTrack` at any frame times.

Steps: (1) phones (PocketSphinx allphone, :mod:`dubber.mouth.phones`); (2) acoustics per
voice (loudness, Silero voice activity, Praat formants and pitch,
:mod:`dubber.mouth.acoustics`) and every phone's posterior from PocketSphinx's acoustic
model (:mod:`dubber.mouth.posteriors`) and Whisper tiny.en's encoder
(:mod:`dubber.mouth.whisper`); (3) the speech flag and the pauses; (4) the viseme
timeline by our timing rules (:mod:`dubber.mouth.rules`); (5) the continuous parameters
from the learnt regressor (:mod:`dubber.mouth.regressor`, fitted on the corpus's face-mesh
lips); (6) the rules laid over them: closures and silences shut the mouth.

Everything runs from what ships in the wheels and ``weights/mouth-driver.safetensors``;
the first two steps are per voice and the rest per frame, so the same analysis serves any
number of frame timelines (:meth:`MouthDriver.analyse`, then :meth:`MouthDriver.track`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from dubber.errors import WeightsError
from dubber.mouth import rules
from dubber.mouth.acoustics import HOP, STEPS_PER_SECOND, Acoustics, acoustics, voice_activity
from dubber.mouth.features import (CONTEXT_OFFSETS, CONTEXT_WIDTH, N_FEATURES, N_POSTERIORS,
                                   SILENCE_PHONE, frame_features, frame_projection,
                                   silence_steps, step_features)
from dubber.mouth.phones import Phone, PhoneRecogniser, default_workers
from dubber.mouth.posteriors import one_blas_thread, phone_model, voice_warp
from dubber.mouth.track import VISEMES, MouthTrack
from dubber.mouth.whisper import speech_encoder

log = logging.getLogger(__name__)

WEIGHTS_NAME = "mouth-driver"  # the manifest entry of the regressor
SAMPLE_RATE = 16000
VAD_ON, VAD_OFF = 0.5, 0.35  # Silero probability that starts / ends speech (hysteresis)
SILENCE_DB = -55.0  # dBFS: quieter than this is silence whatever the VAD says
QUIET_DB = -70.0  # dBFS: a pause this quiet has no sound in it (digital silence, a gated
# or quiet stem between lines); room tone and breath are louder
QUIET_SHARE = 0.9  # ... on this share of its steps
MIN_SPEECH = 0.06  # s: shorter bursts of "speech" are noise
LISTEN_MARGIN = 0.3  # s of audio the recogniser hears around what may be speech
LISTEN_GAP = 0.5  # s: shorter gaps between such parts are heard too
FRAME_BLOCK = 4096  # frames read at once (their steps: about 60 MB as float64)
RELAX = 1.0  # share of the predicted opening (above rest) a pause's relaxed shape keeps: on
# the corpus, mouths in short pauses are not measurably more shut than in speech (the
# relaxed shape changes the viseme only)

_X = VISEMES.index("X")
_A = VISEMES.index("A")
_B = VISEMES.index("B")


@dataclass(frozen=True)
class SpeechAnalysis:
    """What the driver hears in one voice, per 10 ms step (independent of any video).

    Attributes:
        duration: seconds of audio.
        phones: the recognised phones.
        acoustics: loudness, voice activity, formants, pitch.
        steps: shape = (n, N_BASE), float32: the regressor's per-step features.
        speech: shape = (n,), bool: the voice is speaking at the step.
        shapes: the viseme timeline (after every rule).
        silence: shape = (N_BASE,): the step features of silence in this recording, read
            outside the audio (:func:`~dubber.mouth.features.silence_steps`).
    """

    duration: float
    phones: list[Phone]
    acoustics: Acoustics
    steps: np.ndarray
    speech: np.ndarray
    shapes: list[rules.Shape]
    silence: np.ndarray | None = None


def speech_steps(ac: Acoustics) -> np.ndarray:
    """The speech flag per step: voice activity with hysteresis, no burst under MIN_SPEECH,
    nothing quieter than SILENCE_DB. Returns shape = (n,), bool."""
    on = np.zeros(len(ac), bool)
    state = False
    for i, (p, db) in enumerate(zip(ac.vad, ac.level)):
        state = (p >= VAD_OFF if state else p >= VAD_ON) and db > SILENCE_DB
        on[i] = state
    return _drop_short(on, int(round(MIN_SPEECH * STEPS_PER_SECOND)))


def listen_regions(level: np.ndarray, vad: np.ndarray) -> list[tuple[int, int]]:
    """Where the recogniser listens: the steps the voice activity may call speech (Silero
    at least ``VAD_OFF``, louder than ``SILENCE_DB``), widened by ``LISTEN_MARGIN`` each
    side, gaps under ``LISTEN_GAP`` bridged. Elsewhere the phones are silence (the rules
    shut the mouth there anyway), which saves the decoding of every pause.

    Returns:
        sorted [start, stop) sample ranges.
    """
    maybe = (np.asarray(vad) >= VAD_OFF) & (np.asarray(level) > SILENCE_DB)
    margin = int(round(LISTEN_MARGIN * STEPS_PER_SECOND))
    out: list[list[int]] = []
    for a, b in _runs(maybe, True):
        a, b = max(a - margin, 0), min(b + margin, len(maybe))
        if out and a - out[-1][1] < LISTEN_GAP * STEPS_PER_SECOND:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(a * HOP, b * HOP) for a, b in out]


def _runs(flags: np.ndarray, value: bool) -> list[tuple[int, int]]:
    """[start, end) index runs where ``flags == value``."""
    f = np.concatenate([[0], (flags == value).astype(np.int8), [0]])
    d = np.diff(f)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist()))


def _drop_short(on: np.ndarray, min_len: int) -> np.ndarray:
    out = on.copy()
    for a, b in _runs(on, True):
        if b - a < min_len:
            out[a:b] = False
    return out


def pauses(speech: np.ndarray) -> list[tuple[float, float]]:
    """Silent intervals in seconds: the runs without speech. (A SIL phone inside speech is
    not a pause: the recogniser calls breaths and stop closures silence too.)"""
    return [(a / STEPS_PER_SECOND, b / STEPS_PER_SECOND) for a, b in _runs(speech, False)]


def _phone_model():
    """The wheel's acoustic model, checked against the regressor's feature layout."""
    model = phone_model()
    if (len(model.phones), model.silence) != (N_POSTERIORS, SILENCE_PHONE):
        raise WeightsError(f"PocketSphinx's acoustic model has {len(model.phones)} phones "
                           f"(silence {model.silence}), the driver's features expect "
                           f"{N_POSTERIORS} (silence {SILENCE_PHONE}): install "
                           "pocketsphinx 5 as pinned in constraints.txt")
    return model


def quiet_pauses(spans: list[tuple[float, float]], level: np.ndarray) -> list[bool]:
    """Per pause (seconds), whether it has no sound in it: nearly all of its steps
    (``QUIET_SHARE``) quieter than ``QUIET_DB``."""
    out = []
    for a, b in spans:
        seg = level[int(round(a * STEPS_PER_SECOND)):int(round(b * STEPS_PER_SECOND))]
        out.append(bool(len(seg)) and float(np.mean(seg <= QUIET_DB)) >= QUIET_SHARE)
    return out


def hushed_spans(level: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of every run of steps quieter than ``QUIET_DB``: no sound at
    all, wherever it lies in a pause (the rules shut the long ones)."""
    return [(a / STEPS_PER_SECOND, b / STEPS_PER_SECOND)
            for a, b in _runs(np.asarray(level) <= QUIET_DB, True)]


def load_regressor(weights_dir: str | os.PathLike | None = None):
    """The shipped regressor (manifest entry :data:`WEIGHTS_NAME`), checked by sha256."""
    from dubber.models.dims import MouthDriverDims, dims_from_mapping
    from dubber.models.registry import load_model, manifest_path, read_manifest, \
        resolve_weights_dir

    folder = resolve_weights_dir(weights_dir)
    entry = read_manifest(folder).get(WEIGHTS_NAME)
    if entry is None:
        raise WeightsError(f"no {WEIGHTS_NAME!r} in {manifest_path(folder)}; make it with "
                           "`python -m dubber.mouth.fit`")
    dims = dims_from_mapping(MouthDriverDims, entry.dims)
    if ((tuple(dims.context_offsets), dims.context_width, dims.n_features)
            != (CONTEXT_OFFSETS, CONTEXT_WIDTH, N_FEATURES)):
        raise WeightsError(f"{entry.file} was fitted on another feature layout; refit it with "
                           "`python -m dubber.mouth.fit`")
    return load_model("mouth_driver", WEIGHTS_NAME, dims, folder)


class MouthDriver:
    """Speech -> mouth track. Make one and reuse it (the recogniser and weights load once).

    Args:
        weights_dir: where ``mouth-driver.safetensors`` is (default: the weights folder).
        regressor: a :class:`~dubber.mouth.regressor.MouthRegressor` to use instead
            (fitting and tests).
        workers: processes that run the phone recogniser while this one measures the
            acoustics (default :func:`~dubber.mouth.phones.default_workers`; 0: none).
            They start on the first analysis; :meth:`close` (or the end of a ``with``
            block) stops them.
    """

    def __init__(self, weights_dir: str | os.PathLike | None = None, regressor=None,
                 workers: int | None = None) -> None:
        self.regressor = regressor if regressor is not None else load_regressor(weights_dir)
        self.regressor = self.regressor.float().eval()
        self.workers = default_workers() if workers is None else int(workers)
        self._recogniser: PhoneRecogniser | None = None

    def close(self) -> None:
        """Stop the recogniser's worker processes, if any."""
        if self._recogniser is not None:
            self._recogniser.close()

    def worker_pids(self) -> list[int]:
        """Process ids of the recogniser's running workers."""
        return self._recogniser.worker_pids() if self._recogniser is not None else []

    def __enter__(self) -> "MouthDriver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def rest(self) -> np.ndarray:
        """The mouth at rest, shape = (3,), float32 (opening is the shut mouth's)."""
        return self.regressor.rest.float().numpy()

    def analyse(self, samples: np.ndarray) -> SpeechAnalysis:
        """Steps 1-4 for 16 kHz mono speech (shape = (S,), float32)."""
        with one_blas_thread():
            return self._analyse(samples)

    def _analyse(self, samples: np.ndarray) -> SpeechAnalysis:
        if self._recogniser is None:
            self._recogniser = PhoneRecogniser(self.workers)
        samples = np.asarray(samples, np.float32)
        duration = len(samples) / SAMPLE_RATE
        activity = voice_activity(samples)
        # the phones of the speech, decoded by the workers while this process measures
        pending = self._recogniser.submit(samples, listen_regions(*activity))
        ac = acoustics(samples, activity)
        speech = speech_steps(ac)
        posteriors = _phone_model().posteriors(samples, speech, warp=voice_warp(ac.f2_median))
        encoded, encoded_silence = speech_encoder()(samples)
        phones = pending.result()
        silent = pauses(speech)
        shapes = rules.timeline(phones, silent, duration, quiet_pauses(silent, ac.level),
                                hushed_spans(ac.level))
        visemes = rules.sample(shapes, np.arange(len(ac)) / STEPS_PER_SECOND)[0]
        return SpeechAnalysis(duration, phones, ac,
                              step_features(posteriors, ac, visemes, encoded), speech,
                              shapes, silence_steps(encoded_silence))

    def features(self, analysis: SpeechAnalysis, times: np.ndarray) -> np.ndarray:
        """The regressor's inputs at each frame time, shape = (N, N_FEATURES)."""
        return frame_features(analysis.steps, np.asarray(times, np.float64),
                              silence=analysis.silence)

    def standardised(self, analysis: SpeechAnalysis, times: np.ndarray,
                     delta: np.ndarray | None = None) -> np.ndarray:
        """The regressor's per-speaker z-scores at each frame time, shape = (N, 3).

        ``delta`` (shape = (N_FEATURES, 3)): an actor's adaptation of the regressor's
        linear map (:mod:`dubber.mouth.calibrate`), added to it.
        """
        import torch

        times = np.asarray(times, np.float64).reshape(-1)
        reg = self.regressor
        linear = None
        if isinstance(reg.net, torch.nn.Linear):  # no features are built: see frame_projection
            w = reg.net.weight.detach().double().numpy().T
            if delta is not None:
                w = w + np.asarray(delta, np.float64)
            w = w / reg.in_std.double().numpy()[:, None]
            linear = (w, reg.net.bias.detach().double().numpy() - reg.in_mean.double().numpy() @ w)
        out = np.zeros((len(times), 3), np.float32)
        for first in range(0, len(times), FRAME_BLOCK):  # a film's steps at once would not fit
            block = times[first:first + FRAME_BLOCK]
            if linear is not None:
                out[first:first + len(block)] = frame_projection(
                    analysis.steps, block, linear[0], silence=analysis.silence) + linear[1]
                continue
            x = torch.from_numpy(self.features(analysis, block))
            with torch.inference_mode():
                xn = (x - reg.in_mean) / reg.in_std
                z = reg.net(xn).numpy()
                if delta is not None:
                    z = z + xn.numpy() @ np.asarray(delta, np.float32)
            out[first:first + len(x)] = z
        return out

    def track(self, speech: np.ndarray | SpeechAnalysis, times, calibration=None
              ) -> MouthTrack:
        """The mouth track of every frame.

        Args:
            speech: 16 kHz mono samples (shape = (S,), float32), or their analysis.
            times: shape = (N,): each frame's presentation time in seconds, the audio's
                first sample being time 0 (any frame rate, variable included).
            calibration: an actor's :class:`~dubber.mouth.calibrate.Calibration`: the
                parameters are then this actor's (its adapted regressor, range and rest).

        Returns:
            One entry per frame; frames outside the audio are silent and at rest.
        """
        a = speech if isinstance(speech, SpeechAnalysis) else self.analyse(speech)
        times = np.asarray(times, np.float64).reshape(-1)
        at = times + (calibration.shift if calibration is not None else 0.0)
        # 5. the continuous parameters
        z = self.standardised(a, at, None if calibration is None else calibration.delta)
        reg = self.regressor
        params = reg.out_mean.float().numpy() + reg.out_std.float().numpy() * z
        # 6. the rules over them
        viseme, shut, relaxed = rules.sample(a.shapes, at)
        step = np.rint(at * STEPS_PER_SECOND).astype(np.int64)
        inside = (step >= 0) & (step < len(a.speech))
        k = np.clip(step, 0, max(len(a.speech) - 1, 0))
        speech_on = np.where(inside, a.speech[k] if len(a.speech) else False, False)
        vad = np.where(inside, a.acoustics.vad[k] if len(a.speech) else 0.0, 0.0)
        viseme[~inside] = _X
        rest = self.rest
        params[relaxed, 0] = rest[0] + RELAX * np.maximum(params[relaxed, 0] - rest[0], 0)
        params[viseme == _X] = rest
        # each closure shuts the lips as they meet (one frame at 25 fps); the rest of its
        # span shows the opening the regressor gives, a consonant's (B), not a shut mouth
        shut &= inside
        viseme[(viseme == _A) & ~shut] = _B
        params[shut, 0] = rest[0]
        params[:, 0] = np.maximum(params[:, 0], rest[0])  # nothing shuts more than shut
        confidence = np.where(inside, np.maximum(vad, 1 - vad), 1.0).astype(np.float32)
        track = MouthTrack(times, viseme.astype(np.uint8), params.astype(np.float32),
                           speech_on.astype(bool), confidence)
        if calibration is not None:
            track = calibration.map(track, rest)
        return track


def drive(samples: np.ndarray, times, weights_dir: str | os.PathLike | None = None) -> MouthTrack:
    """One-off: the mouth track of ``samples`` (16 kHz mono) at ``times`` (seconds)."""
    return MouthDriver(weights_dir).track(samples, times)
