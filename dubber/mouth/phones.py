"""Phones from any speech: PocketSphinx 5 in allphone mode (en-us model inside its wheel).

The recogniser is English-trained: on other languages its phones are the nearest English
ones, which is what a mouth needs (an open vowel is an open vowel), not a transcript.
Nothing is downloaded: the acoustic model and the phone language model ship in the
``pocketsphinx`` wheel (``get_model_path()``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Hz: the en-us model's rate
STEPS_PER_SECOND = 100  # PocketSphinx frames: 10 ms

# The en-us model's context-independent phones; SIL stands for silence and every filler
# (+NSN+, +SPN+, ...). The index of a phone here is its id in the driver's features.
PHONES = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY",
          "F", "G", "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R",
          "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH")
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
VOWELS = frozenset(("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW",
                    "OY", "UH", "UW"))
BILABIALS = frozenset(("P", "B", "M"))

# Decoder settings. The language weight and insertion penalty are PocketSphinx's tests';
# the beams are Rhubarb Lip Sync's (1e-20): narrower ones (1e-10) are a fifth faster but
# lose the search on some voices (8 s of Chinese news came out as 4 phones, one of them
# 7 s long).
LANGUAGE_WEIGHT = 2.0
PHONE_INSERTION_PENALTY = 0.3
BEAM = 1e-20


@dataclass(frozen=True)
class Phone:
    """One recognised phone."""

    phone: str  # one of PHONES
    start: float  # seconds
    end: float  # seconds, exclusive


class PhoneRecogniser:
    """An allphone decoder, made once and reused (making one costs about 0.1 s)."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder, get_model_path

        self._decoder = Decoder(
            hmm=get_model_path("en-us/en-us"),
            allphone=get_model_path("en-us/en-us-phone.lm.bin"),
            allphone_ci=True, lw=LANGUAGE_WEIGHT, pip=PHONE_INSERTION_PENALTY,
            beam=BEAM, pbeam=BEAM, loglevel="FATAL")

    def phones(self, samples: np.ndarray) -> list[Phone]:
        """Recognise the phones of 16 kHz mono speech, block by block for long audio
        (:func:`dubber.mouth.acoustics.blocks`: cut at quiet points).

        Args:
            samples: shape = (S,), float32 in [-1, 1], 16 kHz mono.

        Returns:
            Consecutive phones covering the signal (silence as ``SIL``).
        """
        from dubber.mouth.acoustics import blocks

        out: list[Phone] = []
        for a, b in blocks(samples):
            t0 = a / SAMPLE_RATE
            for p in self._decode(samples[a:b]):
                p = Phone(p.phone, p.start + t0, p.end + t0)
                if out and out[-1].phone == p.phone == "SIL":
                    out[-1] = Phone("SIL", out[-1].start, p.end)
                else:
                    out.append(p)
        return out

    def _decode(self, samples: np.ndarray) -> list[Phone]:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        out = []
        for seg in d.seg() or ():  # None when nothing was decoded (silence)
            name = seg.word if seg.word in PHONE_INDEX else "SIL"
            start = seg.start_frame / STEPS_PER_SECOND
            end = (seg.end_frame + 1) / STEPS_PER_SECOND
            if out and out[-1].phone == name == "SIL":
                out[-1] = Phone("SIL", out[-1].start, end)
            else:
                out.append(Phone(name, start, end))
        return out


def phone_steps(phones: list[Phone], n_steps: int) -> np.ndarray:
    """The phone id (index into :data:`PHONES`) of every 10 ms step.

    Returns:
        shape = (n_steps,), int16; steps no phone covers are SIL (0).
    """
    ids = np.zeros(n_steps, np.int16)
    for p in phones:
        a = int(round(p.start * STEPS_PER_SECOND))
        b = int(round(p.end * STEPS_PER_SECOND))
        ids[max(a, 0):max(min(b, n_steps), 0)] = PHONE_INDEX[p.phone]
    return ids
