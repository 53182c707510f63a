"""A learned speech representation for the regressor: the inner layer of Google's
``speech_embedding`` network, read from the model files that ship inside the
``openwakeword`` 0.5.1 wheel (``openwakeword/resources/models/``; Apache 2.0).

The network was trained by Google to spot keywords on a large corpus of many voices
(TF Hub ``google/speech_embedding``); openWakeWord converted it to ONNX in two parts, a
log-mel front end (``melspectrogram.onnx``: 512-sample STFT every 10 ms, 32 mel bands,
10 log10, floored 80 dB below the loudest) and the convolutional network
(``embedding_model.onnx``, 76 mel frames -> 96 numbers). Its outputs know sounds, not
speakers, which is what a driver for voices it never heard needs. We do not use its last
layer (a summary of 0.76 s) but its fourth pooling layer (96 channels x 2 frequency bands,
every 40 ms, each seeing 0.4 s of sound): on the corpus it lifted the opening's
leave-one-video-out r from 0.442 to 0.468 and the clips' zero-shot r from 0.442 to 0.475,
where the last layer gave 0.454 / 0.454 (see ``weights/README.md``).

Nothing here runs ONNX: the ``onnx`` package reads the files and the layers run in torch,
the whole voice at once in chunks (the network is convolutional in time, so chunks
aligned on its stride give exactly what one pass would). Checked against onnxruntime on
the files (2026-11-30): the same outputs to float precision.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from dubber.errors import WeightsError
from dubber.models.threads import one_torch_thread
from dubber.mouth.acoustics import HOP, SAMPLE_RATE

PACKAGE = "openwakeword==0.5.1"
LAYER = "model/max_pooling2d_3/MaxPool:0"  # the inner layer we read
N_EMBEDDING = 192  # its 96 channels x 2 frequency bands
STRIDE = 4  # mel frames between its outputs
REACH = 40  # mel frames each output sees; output t sees frames 4t .. 4t + 39
N_FFT = 512
MEL_HOP = 160  # samples (the mel frames are the acoustics' 10 ms steps ...)
MEL_CENTRE = (N_FFT / 2) / MEL_HOP  # ... frame j centred on step j + 1.6 (no STFT padding)
TOP_DB = 80.0
CHUNK = 4096  # outputs per pass (about 160 s of speech; bounds the memory of long films)
MEL_BLOCK = 6000  # mel frames (60 s) per STFT, and 10 ms steps per interpolation block


def model_dir() -> Path:
    """Where the wheel keeps the model files (without importing ``openwakeword``, whose
    ``__init__`` wants onnxruntime and tflite, which we do not use)."""
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the mouth driver's speech embedding needs the model files of "
                           f"{PACKAGE}: pip install --no-deps {PACKAGE} (or `make setup`)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "resources" / "models"
    for name in ("melspectrogram.onnx", "embedding_model.onnx"):
        if not (folder / name).is_file():
            raise WeightsError(f"{folder / name} is missing: the speech embedding needs "
                               f"{PACKAGE}, whose wheel ships it (later releases do not)")
    return folder


def _initialisers(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: np.array(numpy_helper.to_array(i)) for i in graph.initializer}


class SpeechEmbedding:
    """The log-mel front end and the network up to :data:`LAYER`, in torch."""

    def __init__(self, folder: str | Path | None = None) -> None:
        import onnx
        import torch

        folder = Path(folder) if folder is not None else model_dir()
        try:
            mel = onnx.load(str(folder / "melspectrogram.onnx"))
            net = onnx.load(str(folder / "embedding_model.onnx"))
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file
            raise WeightsError(f"cannot read the speech embedding's model in {folder}: "
                               f"{e}") from None
        w = _initialisers(mel.graph)
        # the STFT as two convolutions (real, imaginary) and the mel filterbank
        self.stft = torch.from_numpy(np.concatenate([w["0.stft.conv_real.weight"],
                                                     w["0.stft.conv_imag.weight"]]))
        self.mel = torch.from_numpy(w["1.melW"])
        self.n_bins = self.stft.shape[0] // 2
        self.layers = self._layers(net.graph)

    @staticmethod
    def _layers(graph) -> list:
        """The network's nodes up to :data:`LAYER`, as (op, parameters) in order."""
        import torch

        w = _initialisers(graph)
        layers = []
        for node in graph.node:
            attrs = {a.name: a for a in node.attribute}

            def ints(name, default, attrs=attrs):
                return list(attrs[name].ints) if name in attrs else default

            if node.op_type == "Reshape":  # [N, 76, 32, 1] -> [N, 1, 76, 32]: ours comes so
                continue
            if node.op_type == "Conv":
                pads = ints("pads", [0, 0, 0, 0])
                if pads[0] != pads[2] or pads[1] != pads[3]:
                    raise WeightsError(f"unexpected asymmetric padding in {node.name}")
                bias = w[node.input[2]] if len(node.input) > 2 else None
                layers.append(("conv", torch.from_numpy(w[node.input[1]]),
                               None if bias is None else torch.from_numpy(bias),
                               tuple(ints("strides", [1, 1])), (pads[0], pads[1])))
            elif node.op_type == "LeakyRelu":
                layers.append(("leaky", attrs["alpha"].f))
            elif node.op_type == "Max":
                layers.append(("max", torch.from_numpy(w[node.input[1]])))
            elif node.op_type == "MaxPool":
                if any(ints("pads", [0, 0, 0, 0])):
                    raise WeightsError(f"unexpected padding in {node.name}")
                layers.append(("pool", tuple(ints("kernel_shape", [])),
                               tuple(ints("strides", []))))
            else:
                raise WeightsError(f"the speech embedding has an operation this reader does "
                                   f"not know: {node.op_type}")
            if node.output[0] == LAYER:
                return layers
        raise WeightsError(f"the speech embedding's model has no layer {LAYER}")

    def _net(self, spec):
        """(1, 1, T, 32) log-mel -> (n, N_EMBEDDING) for its T // 4 - 9 windows."""
        import torch
        import torch.nn.functional as F

        x = spec
        with torch.inference_mode():
            for layer in self.layers:
                if layer[0] == "conv":
                    x = F.conv2d(x, layer[1], layer[2], layer[3], layer[4])
                elif layer[0] == "leaky":
                    x = F.leaky_relu(x, layer[1])
                elif layer[0] == "max":
                    x = torch.maximum(x, layer[1])
                else:
                    x = F.max_pool2d(x, layer[1], layer[2])
            return x[0].permute(1, 0, 2).reshape(x.shape[2], -1)

    @staticmethod
    def _scale(db: float) -> float:
        """openWakeWord's scaling of the model's dB (``x / 10 + 2``)."""
        return db / 10.0 + 2.0

    def log_mel(self, samples: np.ndarray):
        """(1, 1, frames, 32) scaled log-mel of 16 kHz samples in [-1, 1], computed
        ``MEL_BLOCK`` frames at a time (a film's STFT whole would take gigabytes)."""
        import torch
        import torch.nn.functional as F

        x = np.asarray(samples, np.float32)
        if len(x) < N_FFT:
            x = np.pad(x, (0, N_FFT - len(x)))
        n_frames = (len(x) - N_FFT) // MEL_HOP + 1
        parts = []
        with torch.inference_mode():
            for a in range(0, n_frames, MEL_BLOCK):
                b = min(a + MEL_BLOCK, n_frames)
                seg = np.clip(x[a * MEL_HOP:(b - 1) * MEL_HOP + N_FFT], -1, 1) * 32767.0
                spec = F.conv1d(torch.from_numpy(seg)[None, None], self.stft,
                                stride=MEL_HOP)[0].T  # (frames, 2 x bins)
                power = spec[:, :self.n_bins] ** 2 + spec[:, self.n_bins:] ** 2
                parts.append(10.0 * torch.log10(torch.clamp(power @ self.mel, min=1e-10)))
            db = torch.cat(parts)
            db = torch.maximum(db, db.max() - TOP_DB)  # the floor: 80 dB under the loudest
        return self._scale(db)[None, None]

    def __call__(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The embedding at every 10 ms step of the samples (step k centred on sample
        k * 160, as the acoustics'), shape = (ceil(S / 160), N_EMBEDDING), float32; and
        the embedding of silence (the mel floor throughout, which is relative to the
        loudest sound), shape = (N_EMBEDDING,), what the network hears outside the sound.
        """
        with one_torch_thread():  # 0.37 s of CPU for 97 s of speech against 0.45 on two
            return self._embed(samples)

    def _embed(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        n_steps = int(np.ceil(len(samples) / HOP))
        spec = self.log_mel(samples)
        floor = float(spec.min())
        # half a reach of silence on either side, so the first and last steps are centred
        pad = REACH // 2
        total = spec.shape[2] + 2 * pad
        total += (-(total - REACH)) % STRIDE
        padded = torch.full((1, 1, total, spec.shape[3]), floor)
        padded[:, :, pad:pad + spec.shape[2]] = spec
        n_out = (total - REACH) // STRIDE + 1
        outs = []
        for first in range(0, n_out, CHUNK):
            count = min(CHUNK, n_out - first)
            a = first * STRIDE
            outs.append(self._net(padded[:, :, a:a + (count - 1) * STRIDE + REACH]))
        out = torch.cat(outs).numpy()
        silence = self._net(torch.full((1, 1, REACH, spec.shape[3]), floor))[0].numpy()
        # output t is centred on mel frame 4t + 19.5 - pad, i.e. on step (that) + 1.6
        centre = STRIDE * np.arange(len(out)) + (REACH - 1) / 2 - pad + MEL_CENTRE
        steps = np.arange(n_steps, dtype=np.float64)
        i = np.clip(np.searchsorted(centre, steps) - 1, 0, max(len(out) - 2, 0))
        frac = np.clip((steps - centre[i]) / STRIDE, 0.0, 1.0).astype(np.float32)[:, None]
        j = np.minimum(i + 1, len(out) - 1)
        result = np.empty((n_steps, out.shape[1]), np.float32)
        for a in range(0, n_steps, MEL_BLOCK):  # linear between outputs, a block at a time
            b = slice(a, a + MEL_BLOCK)
            result[b] = out[i[b]] + frac[b] * (out[j[b]] - out[i[b]])
        return result, silence


@functools.lru_cache(maxsize=1)
def speech_embedding() -> SpeechEmbedding:
    """The process's one :class:`SpeechEmbedding` (read once)."""
    return SpeechEmbedding()


assert SAMPLE_RATE == MEL_HOP * 100  # the mel frames are the 10 ms steps
