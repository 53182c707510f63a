"""Phones from any speech: PocketSphinx 5 in allphone mode (en-us model inside its wheel).

The recogniser is English-trained: on other languages its phones are the nearest English
ones, which is what a mouth needs (an open vowel is an open vowel), not a transcript.
Nothing is downloaded: the acoustic model and the phone language model ship in the
``pocketsphinx`` wheel (``get_model_path()``).
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

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

# Decoder settings. The language weight and insertion penalty are PocketSphinx's tests'.
# Beams: 1e-10 is a fifth faster than Rhubarb Lip Sync's 1e-20 but loses the search on
# some voices (8 s of Chinese news came out as 4 phones, one of them 7 s long); 1e-15 is 4 %
# faster than 1e-20 and gives the same phones on the corpus (its longest phone on the 9
# files of ../shared/media/speech: 0.42 s). TOPN: Gaussians scored per frame (4 by
# default); 2 is 9 % faster, and the driver refitted on its phones follows the lips as well
# (leave-one-video-out opening r 0.344 -> 0.351); 1 held a phone for 0.89 s on en_jfk.
# PBEAM (the phone beam alone): 1e-12 is 9 % faster than 1e-15 and gives the same phones,
# start for start, on the 9 files of ../shared/media/speech; 1e-10, 17 % faster, changes
# them on 4 of the 9.
LANGUAGE_WEIGHT = 2.0
PHONE_INSERTION_PENALTY = 0.3
BEAM = 1e-15
PBEAM = 1e-12
TOPN = 2


@dataclass(frozen=True)
class Phone:
    """One recognised phone."""

    phone: str  # one of PHONES
    start: float  # seconds
    end: float  # seconds, exclusive


WORKERS_FROM_SECONDS = 30.0  # speech shorter than this is decoded here until the workers
# run: starting one costs about 0.5 s (an interpreter, numpy, the decoder), as much as
# decoding 12 s of speech
PIECE_SECONDS = 8.0  # audio is decoded in pieces of at most this, cut at quiet points
# (:func:`dubber.mouth.acoustics.blocks`), so that worker processes share long audio; the
# pieces are the same whatever the number of workers, so the phones are too


def default_workers() -> int:
    """Worker processes for the recogniser: 2 on a machine with several cores, else 0
    (on one core, decoding in the driver's own process is as fast)."""
    n = os.cpu_count() or 1
    return 0 if n < 2 else 2


class PhoneRecogniser:
    """An allphone decoder, made once and reused (making one costs about 0.1 s).

    PocketSphinx holds the GIL while it decodes (three quarters of the driver's time), so
    with ``workers > 0`` the pieces of the audio are decoded by that many worker processes
    (``python -c`` children of this interpreter, each with its own decoder, started by the
    first call with at least ``WORKERS_FROM_SECONDS`` of speech) while the caller does the
    rest of its work: :meth:`submit` returns at once, :meth:`PendingPhones.result` waits. A worker that fails is dropped and its pieces are
    decoded in this process: the phones are the same either way.

    Args:
        workers: worker processes (0: decode in this process).
    """

    def __init__(self, workers: int = 0) -> None:
        self.workers = int(workers)
        self._decoder = None
        self._lock = threading.Lock()
        self._procs: list[_Worker] = []

    def phones(self, samples: np.ndarray) -> list[Phone]:
        """Recognise the phones of 16 kHz mono speech, piece by piece (cut at quiet points).

        Args:
            samples: shape = (S,), float32 in [-1, 1], 16 kHz mono.

        Returns:
            Consecutive phones covering the signal (silence as ``SIL``).
        """
        return self.submit(samples).result()

    def submit(self, samples: np.ndarray, regions: list[tuple[int, int]] | None = None
               ) -> "PendingPhones":
        """Start recognising ``samples`` (as :meth:`phones`); the result comes later.

        Args:
            samples: shape = (S,), float32 in [-1, 1], 16 kHz mono.
            regions: [start, stop) sample ranges to listen to, sorted and apart (default:
                everything); the rest is silence (``SIL``) without decoding.
        """
        from dubber.mouth.acoustics import blocks

        samples = np.asarray(samples, np.float32)
        pieces = []
        for a, b in regions if regions is not None else [(0, len(samples))]:
            a, b = max(int(a), 0), min(int(b), len(samples))
            pieces += [((a + c) / SAMPLE_RATE, _pcm(samples[a + c: a + d]))
                       for c, d in blocks(samples[a:b], PIECE_SECONDS) if d > c]
        heard = sum(len(pcm) for _, pcm in pieces) / (2 * SAMPLE_RATE)
        with self._lock:
            running = bool(self._procs)
        workers = self._started_workers() if running or heard >= WORKERS_FROM_SECONDS else []
        return PendingPhones(self, pieces, workers, len(samples) / SAMPLE_RATE)

    def close(self) -> None:
        """Stop the worker processes (a later call starts them again)."""
        with self._lock:
            procs, self._procs = self._procs, []
        for w in procs:
            w.stop()

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (benchmarks count their CPU time)."""
        with self._lock:
            return [w.pid for w in self._procs]

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _started_workers(self) -> list["_Worker"]:
        with self._lock:
            try:
                while len(self._procs) < self.workers:
                    self._procs.append(_Worker())
            except OSError as exc:
                log.warning("cannot start phone recogniser workers (%s): decoding here", exc)
                self.workers = len(self._procs)
            return list(self._procs)

    def _drop(self, worker: "_Worker", exc: BaseException) -> None:
        log.warning("a phone recogniser worker failed (%s): decoding here", exc)
        with self._lock:
            if worker in self._procs:
                self._procs.remove(worker)
                self.workers = len(self._procs)
        worker.stop()

    def _decode(self, pcm: bytes) -> list[Phone]:
        with self._lock:
            if self._decoder is None:
                self._decoder = _new_decoder()
            return _decode_pcm(self._decoder, pcm)


class PendingPhones:
    """Phones being recognised (:meth:`PhoneRecogniser.submit`): one thread per worker
    feeds it pieces and reads back their phones (the threads wait on pipes, not the GIL)."""

    def __init__(self, owner: PhoneRecogniser, pieces: list[tuple[float, bytes]],
                 workers: list["_Worker"], duration: float) -> None:
        self._owner, self._pieces, self._duration = owner, pieces, duration
        self._decoded: list[list[Phone] | None] = [None] * len(pieces)
        self._todo = list(range(len(pieces)))
        self._todo_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._feed, args=(w,), daemon=True)
                         for w in workers]
        for t in self._threads:
            t.start()

    def _next(self) -> int | None:
        with self._todo_lock:
            return self._todo.pop(0) if self._todo else None

    def _feed(self, worker: "_Worker") -> None:
        while (i := self._next()) is not None:
            try:
                self._decoded[i] = worker.decode(self._pieces[i][1])
            except (OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
                with self._todo_lock:
                    self._todo.insert(0, i)
                self._owner._drop(worker, exc)
                return

    def result(self) -> list[Phone]:
        """The phones (waits for the workers; decodes here what none decoded)."""
        for t in self._threads:
            t.join()
        out: list[Phone] = []

        def add(p: Phone) -> None:
            if p.end <= p.start:
                return
            if out and out[-1].phone == p.phone == "SIL":
                out[-1] = Phone("SIL", out[-1].start, p.end)
            else:
                out.append(p)

        for i, (t0, pcm) in enumerate(self._pieces):
            phones = self._decoded[i]
            if phones is None:
                phones = self._owner._decode(pcm)
            end = out[-1].end if out else 0.0
            if t0 > end + 1e-9:  # not listened to: silence
                add(Phone("SIL", end, t0))
            for p in phones:
                add(Phone(p.phone, p.start + t0, p.end + t0))
        end = out[-1].end if out else 0.0
        if self._duration > end + 1e-9:
            add(Phone("SIL", end, self._duration))
        return out


_LENGTH = struct.Struct("<Q")


class _Worker:
    """One decoder in a child process: PCM pieces in on its stdin, their phones (pickled
    ``(phone, start, end)`` tuples) out on its stdout, each message length-prefixed."""

    def __init__(self) -> None:
        import subprocess
        import sys

        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from dubber.mouth.phones import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def decode(self, pcm: bytes) -> list[Phone]:
        with self._lock:
            _write(self._proc.stdin, pcm)
            return [Phone(*p) for p in pickle.loads(_read(self._proc.stdout))]

    def stop(self) -> None:
        try:
            self._proc.stdin.close()  # the worker ends at end of input
            self._proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - a broken pipe or a stuck worker
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _write(stream, data: bytes) -> None:
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream) -> bytes:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the recogniser worker ended")
    (n,) = _LENGTH.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("the recogniser worker ended mid-answer")
    return data


def serve() -> None:
    """A worker process's loop (:class:`_Worker`): decode pieces until stdin ends."""
    import sys

    # answers go to a private copy of stdout; anything a library prints goes to stderr
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stdin = sys.stdin.buffer
    decoder = _new_decoder()
    while True:
        try:
            pcm = _read(stdin)
        except EOFError:
            return
        phones = [(p.phone, p.start, p.end) for p in _decode_pcm(decoder, pcm)]
        _write(stdout, pickle.dumps(phones))


def _pcm(samples: np.ndarray) -> bytes:
    # A piece louder than full scale (a downmix of loud, alike channels adds up to +6 dB)
    # is scaled to fit rather than clipped: clipping changed the phones, the gain does not
    # (each piece is decoded with its own cepstral mean).
    peak = float(np.max(np.abs(samples), initial=0.0))
    return (samples / max(peak, 1.0) * 32767).astype("<i2").tobytes()


def _new_decoder():
    from pocketsphinx import Decoder, get_model_path

    return Decoder(hmm=get_model_path("en-us/en-us"),
                   allphone=get_model_path("en-us/en-us-phone.lm.bin"),
                   allphone_ci=True, lw=LANGUAGE_WEIGHT, pip=PHONE_INSERTION_PENALTY,
                   beam=BEAM, pbeam=PBEAM, topn=TOPN, loglevel="FATAL")


def _decode_pcm(d, pcm: bytes) -> list[Phone]:
    """Phones of one piece (16-bit little-endian PCM), times from its start.

    The decoder's feature state (its cepstral mean) is reset first, so a piece decodes the
    same whatever the decoder heard before: in whichever process, in any order.
    """
    d.reinit_feat()
    d.start_utt()
    d.process_raw(pcm, full_utt=True)
    d.end_utt()
    out: list[Phone] = []
    for seg in d.seg() or ():  # None when nothing was decoded (silence)
        name = seg.word if seg.word in PHONE_INDEX else "SIL"
        start = seg.start_frame / STEPS_PER_SECOND
        end = (seg.end_frame + 1) / STEPS_PER_SECOND
        if out and out[-1].phone == name == "SIL":
            out[-1] = Phone("SIL", out[-1].start, end)
        else:
            out.append(Phone(name, start, end))
    return out

