"""Phone posteriors: how much each of PocketSphinx's 42 base phones sounds like the speech,
every 10 ms, read from the acoustic model that ships inside the ``pocketsphinx`` wheel.

The allphone recogniser (:mod:`dubber.mouth.phones`) gives one phone per moment, its best
guess; on a voice or a language the model was not trained on that guess is often wrong,
and the regressor then learns from a wrong one-hot. The acoustic model knows more than its
best guess: every phone's score. This module scores each 10 ms frame against the model's
context-independent states (the "phonetic posteriorgram" that speech-driven animation
commonly starts from) and gives the regressor the softened posterior of every phone, its
filterbank warped to the voice (:func:`voice_warp`, vocal tract length normalisation). On
the corpus it lifts the opening's leave-one-video-out r from 0.351 to 0.442 (0.416
without the warp; see ``weights/README.md``, the driver's section).

The model is the en-us PTM model of PocketSphinx 5 (``feat.params``: 13 MFCCs, 25 mel
filters 130-6800 Hz, deltas and double deltas in three streams, utterance mean
normalisation; one codebook of 128 Gaussians per stream for each base phone, and each
base phone's three states weighting them: ``means``, ``variances``, ``sendump``,
``mdef``). The front end below follows Sphinx's (pre-emphasis, 25.6 ms Hamming window,
Sphinx's mel scale, DCT-II, lifter 22) closely enough that the frames' best phones agree
with the recogniser's decoded phones on 0.39 of the speech steps of ``en_radio_8s`` (the
most common phone alone: 0.08; a phone loop decoder with triphones and a phone language
model, against single frames). It does not need to match bit for bit: the regressor is
fitted on what this front end gives.
"""

from __future__ import annotations

import functools
import struct
import threading
from pathlib import Path

import numpy as np

from dubber.errors import WeightsError
from dubber.mouth.acoustics import HOP, SAMPLE_RATE  # the acoustics' 10 ms steps, step k
# centred on sample k * HOP: the posteriors share their timeline

WINDOW = 410  # samples: Sphinx's 25.625 ms analysis window
N_FFT = 512
N_FILTERS = 25
LOWER_HZ, UPPER_HZ = 130.0, 6800.0
N_CEPSTRA = 13
LIFTER = 22
PREEMPHASIS = 0.97
TEMPERATURE = 2.0  # the states' log-likelihoods are divided by this before the softmax:
# a GMM's frame likelihoods are far too sure of themselves (at 1 nearly every frame is one
# phone); softened, the posteriors keep the runner-up phones. Chosen by the fit's
# leave-one-video-out opening r on the corpus (2026-11-30): 1: 0.409, 2: 0.416, 5: 0.412,
# 10: 0.405, 20: 0.394
STRIDE = 2  # the model is scored on every STRIDE-th step and held over the next: the
# regressor averages 50 ms windows (leave-one-video-out opening r 0.415 scoring every
# step, 0.416 every second step, for half the cost)
F2_REFERENCE = 1550.0  # Hz: the median F2 of a voice the model hears unwarped
WARP_RANGE = (0.84, 1.20)
# Vocal tract length normalisation: a voice's filterbank is stretched by its median F2 over
# F2_REFERENCE (a shorter tract, higher formants: a woman's, a child's voice, is heard as
# the male-dominated training voices would say it). The usual VTLN picks the warp that the
# model likes best; on the corpus the warp from F2 (which Praat measures anyway) agreed
# with it and costs nothing. Chosen on the training videos by leave-one-video-out, opening
# r regressor alone (2026-11-30): no warp 0.411 in this comparison; F2_REFERENCE 1450 /
# 1500 / 1550 / 1600 Hz within 0.84-1.20: 0.411 / 0.434 / 0.442 / 0.440 (1550 Hz within
# 0.88-1.12: 0.437; the model's own best warp of 0.88-1.12 per voice: 0.436)
CHUNK = 2048  # steps scored at once (bounded memory on films)
LOG_WEIGHT_UNIT = 1024 * np.log(1.0001)  # sendump's quantised -log weight, in nats
# (PocketSphinx's log base 1.0001, shifted by 10 bits)

_lock = threading.Lock()
_model: "PhoneModel | None" = None
_controller = None


def model_folder() -> Path:
    """The en-us acoustic model inside the installed ``pocketsphinx`` package."""
    import pocketsphinx

    return Path(pocketsphinx.__file__).parent / "model" / "en-us" / "en-us"


def _read_s3(path: Path) -> np.ndarray:
    """A SphinxTrain binary Gaussian parameter file (``means``, ``variances``).

    Returns:
        shape = (codebooks, streams, densities, dims), float32.
    """
    b = path.read_bytes()
    i = b.index(b"endhdr\n") + len(b"endhdr\n")
    if struct.unpack("<I", b[i:i + 4])[0] != 0x11223344:
        raise WeightsError(f"{path} is not a little-endian SphinxTrain parameter file")
    i += 4
    n_cb, n_feat, n_dens = struct.unpack("<3i", b[i:i + 12])
    i += 12
    veclen = struct.unpack(f"<{n_feat}i", b[i:i + 4 * n_feat])
    i += 4 * n_feat
    total = struct.unpack("<i", b[i:i + 4])[0]
    i += 4
    if len(set(veclen)) != 1 or total != n_cb * n_feat * n_dens * veclen[0]:
        raise WeightsError(f"{path}: streams of unequal length are not supported")
    return np.frombuffer(b[i:i + 4 * total], "<f4").reshape(n_cb, n_feat, n_dens, veclen[0])


def _read_sendump(path: Path, n_feat: int) -> np.ndarray:
    """PocketSphinx's quantised mixture weights.

    Returns:
        shape = (streams, densities, senones), uint8: -log(weight) in LOG_WEIGHT_UNITs.
    """
    b = path.read_bytes()
    i = 0
    while True:  # the header: length-prefixed strings, a zero length ends it
        n = struct.unpack("<i", b[i:i + 4])[0]
        i += 4
        if n == 0:
            break
        if b"cluster_count" in b[i:i + n] and b"cluster_count 0" not in b[i:i + n]:
            raise WeightsError(f"{path}: clustered mixture weights are not supported")
        i += n
    rows, cols = struct.unpack("<2i", b[i:i + 8])
    i += 8
    return np.frombuffer(b[i:i + n_feat * rows * cols], np.uint8).reshape(n_feat, rows, cols)


def _read_phones(path: Path) -> list[str]:
    """The base phones of a binary ``mdef``, in the model's order."""
    b = path.read_bytes()
    end = b"END FILE FORMAT DESCRIPTION\n"
    i = b.index(end) + len(end) + 1  # the description's terminating NUL
    n_ci, _, n_emit, n_ci_sen = struct.unpack("<4i", b[i:i + 16])
    j = i + 10 * 4
    names = b[j:].split(b"\0", n_ci)[:n_ci]
    if n_emit != 3 or n_ci_sen != 3 * n_ci:
        raise WeightsError(f"{path}: expected 3 states per base phone")
    return [n.decode("ascii") for n in names]


class PhoneModel:
    """The base phones' three states, each a mixture over its phone's codebook.

    Args:
        folder: a PocketSphinx PTM model folder (default: the wheel's en-us model).
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        folder = Path(folder) if folder is not None else model_folder()
        try:
            mu = _read_s3(folder / "means").astype(np.float64)
            var = np.maximum(_read_s3(folder / "variances").astype(np.float64), 1e-4)
            self.phones = _read_phones(folder / "mdef")
            q = _read_sendump(folder / "sendump", mu.shape[1])
        except (OSError, ValueError, struct.error) as exc:
            raise WeightsError(f"cannot read PocketSphinx's acoustic model in {folder} "
                               f"({exc})") from None
        n_cb, n_feat, n_dens, dim = mu.shape
        if (len(self.phones) != n_cb or var.shape != mu.shape or q.shape[1] != n_dens
                or n_feat * dim != 3 * N_CEPSTRA):
            raise WeightsError(f"{folder} is not a PTM model with one codebook per base phone")
        self.n_dens = n_dens
        prec = 1.0 / var
        # log N(x) = [x*x, x, 1] @ [-prec/2, mu*prec, const], one product per stream
        const = -0.5 * ((mu * mu * prec).sum(-1) + np.log(2 * np.pi * var).sum(-1))
        self._proj = [np.concatenate([(-0.5 * prec[:, f]).reshape(-1, dim).T,
                                      (mu * prec)[:, f].reshape(-1, dim).T,
                                      const[:, f].reshape(1, -1)]).astype(np.float32)
                      for f in range(n_feat)]
        # the first 3 * n_cb senones are the base phones' states, phone p's at 3p..3p+2
        w = np.exp(-q[:, :, : 3 * n_cb].astype(np.float64) * LOG_WEIGHT_UNIT)
        self._weights = [w[f].T.reshape(n_cb, 3, n_dens).transpose(0, 2, 1).astype(np.float32)
                         for f in range(n_feat)]  # (phone, density, state)
        self.dim = dim

    @property
    def silence(self) -> int:
        """Index of the silence phone."""
        return self.phones.index("SIL")

    def log_likelihoods(self, feats: np.ndarray) -> np.ndarray:
        """Per-phone log-likelihood (its best state) of each frame.

        Args:
            feats: shape = (T, 39): :func:`sphinx_features`.

        Returns:
            shape = (T, phones), float32.
        """
        t = len(feats)
        n_cb = len(self.phones)
        out = np.zeros((n_cb, t, 3), np.float32)
        for f, (proj, w) in enumerate(zip(self._proj, self._weights)):
            x = feats[:, f * self.dim:(f + 1) * self.dim].astype(np.float32)
            ll = np.concatenate([x * x, x, np.ones((t, 1), np.float32)], 1) @ proj
            top = ll.max(1, keepdims=True)
            np.subtract(ll, top, out=ll)
            np.exp(ll, out=ll)
            mix = np.matmul(ll.reshape(t, n_cb, self.n_dens).transpose(1, 0, 2), w)
            out += np.log(np.maximum(mix, 1e-30)) + top[None]
        return out.max(2).T

    def posteriors(self, samples: np.ndarray, speech: np.ndarray | None = None,
                   stride: int | None = None, warp: float = 1.0) -> np.ndarray:
        """Softened phone posteriors of 16 kHz mono speech at every 10 ms step.

        Args:
            samples: shape = (S,), float32.
            speech: shape = (steps,), bool: where the voice speaks; the cepstral mean is
                taken there (the voice's, not its pauses'), else over all of it.
            stride: score every ``stride``-th step, hold it over the next ones (default
                :data:`STRIDE`).
            warp: the filterbank's frequency scale for this voice (:func:`voice_warp`).

        Returns:
            shape = (S // HOP + 1, phones), float32; rows sum to 1.
        """
        with one_blas_thread():
            return self._posteriors(samples, speech, STRIDE if stride is None else int(stride),
                                    warp)

    def _posteriors(self, samples: np.ndarray, speech: np.ndarray | None, stride: int,
                    warp: float) -> np.ndarray:
        feats = sphinx_features(mfcc(samples, warp), speech)
        picked = feats[::stride]
        z = np.empty((len(picked), len(self.phones)), np.float32)
        for a in range(0, len(picked), CHUNK):
            z[a:a + CHUNK] = self.log_likelihoods(picked[a:a + CHUNK]) / TEMPERATURE
        z -= z.max(1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(1, keepdims=True)
        return z[np.arange(len(feats)) // stride]


def one_blas_thread():
    """A context in which numpy's BLAS runs on one thread. The driver's products are small:
    a second BLAS thread only spins, and its CPU time is taken from the other work on a
    shared machine (the driver's bench: 18.0x real time in CPU time with two BLAS threads,
    21.1x with one, the same wall-clock time)."""
    global _controller
    from threadpoolctl import ThreadpoolController

    with _lock:
        if _controller is None:
            _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def phone_model() -> PhoneModel:
    """The wheel's model, loaded once per process."""
    global _model
    with _lock:
        if _model is None:
            _model = PhoneModel()
        return _model


def _mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def voice_warp(f2_median: float) -> float:
    """The filterbank warp for a voice of median F2 ``f2_median`` Hz (1 when unknown)."""
    if not np.isfinite(f2_median) or f2_median <= 0:
        return 1.0
    return float(np.clip(f2_median / F2_REFERENCE, *WARP_RANGE))


@functools.lru_cache(maxsize=64)
def _filterbank(warp: float = 1.0) -> np.ndarray:
    """Sphinx's triangular mel filters of unit area, their frequencies scaled by ``warp``;
    shape = (N_FILTERS, N_FFT // 2 + 1)."""
    edges = warp * 700.0 * (10 ** (np.linspace(_mel(LOWER_HZ), _mel(UPPER_HZ), N_FILTERS + 2)
                                   / 2595.0) - 1)
    freqs = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT
    fb = np.zeros((N_FILTERS, len(freqs)))
    for i in range(N_FILTERS):
        lo, mid, hi = edges[i:i + 3]
        rise = (freqs - lo) / (mid - lo)
        fall = (hi - freqs) / (hi - mid)
        fb[i] = np.maximum(0.0, np.minimum(rise, fall)) * 2.0 / (hi - lo)
    return fb


_DCT = np.cos(np.pi / N_FILTERS * (np.arange(N_FILTERS) + 0.5)[:, None]
              * np.arange(N_CEPSTRA)[None]) * np.sqrt(2.0 / N_FILTERS)
_DCT[:, 0] /= np.sqrt(2.0)  # orthonormal DCT-II
_LIFT = 1 + LIFTER / 2 * np.sin(np.pi * np.arange(N_CEPSTRA) / LIFTER)
_HAMMING = np.hamming(WINDOW)
DITHER = 0.5  # LSB (16-bit): the standard deviation of the noise added before analysis, as
# Sphinx's dither does. Digital silence would otherwise be a constant log floor far
# outside every Gaussian and read as some random phone (SIL on 0 % of 1 s of zeros; with
# the dither on 100 %). Drawn from a fixed seed: the same audio gives the same posteriors


def mfcc(samples: np.ndarray, warp: float = 1.0) -> np.ndarray:
    """Sphinx-style MFCCs, one per 10 ms step (step k centred on sample k * HOP), computed
    CHUNK steps at a time (memory does not grow with a film's length); ``warp`` scales the
    filterbank's frequencies (:func:`voice_warp`).

    Returns:
        shape = (S // HOP + 1, 13), float64.
    """
    x = np.asarray(samples, np.float32)
    n = len(x) // HOP + 1
    out = np.empty((n, N_CEPSTRA))
    filters = _filterbank(round(float(warp), 3)).T
    rng = np.random.default_rng(0)
    half = WINDOW // 2
    for a in range(0, n, CHUNK):
        b = min(a + CHUNK, n)
        lo = a * HOP - half - 1  # one sample more before: the pre-emphasis needs it
        hi = (b - 1) * HOP - half + WINDOW
        seg = np.zeros(hi - lo)
        src = x[max(lo, 0):max(min(hi, len(x)), 0)]
        seg[max(-lo, 0):max(-lo, 0) + len(src)] = src
        seg *= 32768.0  # Sphinx works on 16-bit sample values
        seg += rng.standard_normal(len(seg)) * DITHER
        pre = seg[1:] - PREEMPHASIS * seg[:-1]
        frames = np.lib.stride_tricks.sliding_window_view(pre, WINDOW)[::HOP][: b - a]
        power = np.abs(np.fft.rfft(frames * _HAMMING, N_FFT)) ** 2
        out[a:b] = np.log(np.maximum(power @ filters, 1e-5)) @ _DCT * _LIFT
    return out


def sphinx_features(cep: np.ndarray, speech: np.ndarray | None = None) -> np.ndarray:
    """Mean-normalised cepstra with deltas (c[t+2] - c[t-2]) and double deltas, Sphinx's
    ``1s_c_d_dd``. Returns shape = (T, 39), float32."""
    use = np.asarray(speech[: len(cep)], bool) if speech is not None else None
    if use is None or use.sum() < 10:
        use = np.ones(len(cep), bool)
    c = cep - cep[use].mean(0)
    p = np.pad(c, ((3, 3), (0, 0)), mode="edge")  # p[t + 3] = c[t]
    d = p[4:] - p[:-4]  # c[t+2] - c[t-2] for t = -1 .. T
    return np.concatenate([c, d[1:-1], d[2:] - d[:-2]], 1).astype(np.float32)
