"""Architecture dimensions of every network, as frozen dataclasses without torch.

A weight file carries its dimensions in its safetensors metadata (like whisper's
``ModelDimensions``), so a model is rebuilt from the file alone; presets carry the same
dataclasses so that ``unittest`` models can be built with no file and ``dub weights
describe`` can count parameters before anything is trained. The defaults are the paper's
sizes (Gupta et al., WACV 2023; GPEN-BFR-512 for the restorer).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class VQGANDims:
    """Face- or Pose-VQGAN (taming-transformers Encoder/Decoder + vector quantizer)."""

    resolution: int = 256  # input and output side in pixels (square RGB crops)
    ch: int = 128  # base channel count of Encoder/Decoder (a multiple of 32: GroupNorm(32))
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # one entry per level; f = 2 ** (levels - 1)
    num_res_blocks: int = 2  # residual blocks per level
    attn_resolutions: tuple[int, ...] = (16,)  # feature-map sides that get self-attention
    z_channels: int = 256  # channels of the encoder output / decoder input
    embed_dim: int = 256  # codebook vector size (the "embedding" the other models see)
    n_embed: int = 1024  # codebook entries

    @property
    def grid(self) -> int:
        """Side of the code grid: resolution / 2 ** (levels - 1) (16 at paper size)."""
        return self.resolution >> (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class SyncNetDims:
    """Lip-sync expert in Face-VQGAN code space (SyncNet-style, two towers)."""

    frames: int = 25  # consecutive video frames per sample (the paper's T)
    embed_dim: int = 256  # Face-VQGAN embedding channels
    grid: int = 16  # Face-VQGAN code grid side
    n_mels: int = 80  # mel bins
    mel_steps: int = 100  # mel steps per sample (1 s at 100 steps/s)
    video_channels: tuple[int, ...] = (512, 512, 512, 512, 512)  # per level, 16x16 -> 1x1
    audio_channels: tuple[int, ...] = (32, 64, 128, 256, 512)  # speech tower per level
    out_dim: int = 512  # D: size of the ReLU'd outputs compared by cosine similarity
    # Code-grid row from which the video tower looks: 0 = the whole face; grid / 2 = the
    # lower half, where the mouth is (Wav2Lip's expert sees the lower half of the face too):
    # identity and head pose then cannot stand in for the lips on a small corpus.
    rows_from: int = 0
    # Subtract each code position's mean over the T frames before the video tower: it then
    # sees how the mouth moves in the window rather than whose mouth it is (on a corpus of
    # a few speakers, identity otherwise dominates and the expert stays at chance longer).
    center_frames: bool = False


@dataclass(frozen=True)
class GeneratorDims:
    """Lip-sync generator: (pose, reference) embeddings + mel window -> face embedding."""

    embed_dim: int = 256  # Face/Pose-VQGAN embedding channels (in and out)
    grid: int = 16  # code grid side
    n_mels: int = 80  # mel bins
    mel_steps: int = 20  # mel window (200 ms at 100 steps/s)
    face_channels: tuple[int, ...] = (256, 256, 256, 256, 256)  # face encoder, 16x16 -> 1x1
    audio_channels: tuple[int, ...] = (32, 64, 128, 256)  # speech encoder per level
    face_dim: int = 256  # face code size at 1x1
    audio_dim: int = 256  # speech code size; face_dim + audio_dim = 512 at paper size
    res_blocks: int = 1  # residual blocks after each conv of encoder and decoder
    # The speech code also scales and shifts every decoder level (FiLM), not only the 1 x 1
    # bottleneck: the skips carry the reference's mouth straight to the output, and with the
    # audio at 1 x 1 alone a small corpus teaches the generator to copy that mouth.
    audio_film: bool = False
    # Predict the change from the reference embedding instead of the embedding itself (the
    # last layer starts at zero, so a new network copies the reference). A few speakers teach
    # a network to draw their faces; a change from a face it is given carries to new faces.
    residual: bool = False
    # A mouth-opening cue between speech and picture: a head on the speech code predicts the
    # frame's lip aperture (face mesh, standardised per segment), and the decoder is
    # conditioned on that scalar, the true one in training and the predicted one when
    # dubbing. Drawing a given opening is learnt from pictures alone; the audio only has to
    # say how far the mouth opens, which a small corpus can teach.
    aperture_cue: bool = False
    # With the cue, condition the decoder on it alone, and predict it with a linear read-out
    # of the mel window's band energies instead of the speech encoder (which is then not
    # built): a speech code can recall which training frame it came from and so draw that
    # frame's mouth, and a convolutional predictor learns a few voices by heart, while the
    # read-out generalises to new ones. Needs aperture_cue.
    cue_only: bool = False
    # What the cue is: 1 = the face mesh's lip aperture; 3 = the mouth track's opening,
    # width and rounding (:mod:`dubber.mouth.params`), each standardised per segment. With 3
    # the decoder is told, when dubbing, the driver's mouth track of the dub
    # (:mod:`dubber.mouth.driver`, through the actor's calibration), the same track the bank
    # renderer follows; the mel read-out predicts all three only where no track is given.
    cue_dims: int = 1

    @property
    def told_mouth_track(self) -> bool:
        """Whether dubbing tells this generator the driver's mouth track (``cue_dims`` 3)."""
        return self.aperture_cue and self.cue_dims == 3


@dataclass(frozen=True)
class LipSyncDims:
    """The sync model on face-mesh lips (:mod:`dubber.sync.model`): two small 1-D conv
    towers, lip and jaw landmarks of ``frames`` frames at 25 fps against the matching
    ``4 * frames`` mel steps, compared by cosine similarity."""

    frames: int = 15  # grid frames per window (600 ms at 25 fps)
    points: int = 55  # moving mesh points (dubber.sync.features.N_MOVING), x and y each
    n_mels: int = 80  # mel bins
    mel_per_frame: int = 4  # mel steps per grid frame (100 steps/s over 25 fps)
    channels: int = 64  # conv channels of both towers
    hidden: int = 128  # fully connected layer after the convs
    out_dim: int = 64  # embedding size
    dropout: float = 0.1  # before the first linear layer of each tower (training only)
    mel_bands: int = 16  # the mel bins are averaged into this many bands first (divides n_mels)
    # True: each tower is one linear map of its whole window (10 k weights, which six
    # training speakers cannot learn by heart: the conv towers above reached 0.6-0.8
    # confidence on their training videos and 0.1-0.3 on new ones, and placed new videos'
    # offsets worse); False: the conv towers (channels, hidden).
    linear: bool = True


@dataclass(frozen=True)
class GPENDims:
    """GPEN blind face restoration (Yang et al., CVPR 2021): encoder + StyleGAN2 prior."""

    size: int = 512  # input and output side in pixels (256 or 512 in the paper)
    style_dim: int = 512  # latent size
    n_mlp: int = 8  # mapping network depth
    channel_multiplier: int = 2  # StyleGAN2 width multiplier for sides >= 64
    narrow: float = 1.0  # global width factor (GPEN-BFR-256 uses 0.5)


@dataclass(frozen=True)
class MouthDriverDims:
    """The mouth driver's regressor: speech features with context -> mouth parameters."""

    n_features: int = 4421  # inputs: dubber.mouth.features.N_FEATURES
    hidden: int = 0  # hidden units of the one hidden layer; 0 = linear (ridge)
    n_params: int = 3  # outputs: opening, width, rounding (dubber.mouth.params.PARAMS)
    # The feature layout the weights were fitted on (checked against dubber.mouth.features).
    context_offsets: tuple[int, ...] = (-15, -10, -5, 0, 5, 10, 15, 20, 25, 30)
    context_width: int = 5


def dims_to_json(dims: Any) -> str:
    """Serialise a dims dataclass for safetensors metadata (values must be JSON types)."""
    return json.dumps(dataclasses.asdict(dims), sort_keys=True)


def dims_from_mapping(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild ``cls`` from a mapping (lists become tuples); unknown keys are a ValueError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
