"""Typed, frozen configuration and named presets.

A :class:`Config` is built from three layers, later ones winning:

1. the defaults written in the dataclasses below,
2. a preset: ``presets/NAME.yaml`` (or any YAML file given by path), whose top-level keys
   are the section names (``media``, ``encode``, ``runtime``, ``faces``, ``models``,
   ``mouth``, ``watermark``),
3. overrides from the command line, as ``{section: {field: value}}``.

Unknown sections, unknown fields and values of the wrong type are a :class:`UsageError`,
so a typo in a preset never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from dubber.errors import UsageError
from dubber.languages import language_problem
from dubber.models.dims import GeneratorDims, GPENDims, LipSyncDims, SyncNetDims, VQGANDims

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
DEFAULT_PRESET = "fast"

VIDEO_CODECS = ("x264", "x265", "prores", "ffv1")


@dataclass(frozen=True)
class MediaConfig:
    """Decoding and the chunk loop."""

    # Frames per chunk. dubber's own peak memory is about (queue_depth + 3) chunks of
    # frames beside the decoder's and encoder's; a 4K 8-bit 4:2:0 frame is 12.4 MB.
    chunk_frames: int = 16
    # ... and at most this many megabytes of full-resolution frames per chunk, so 4K and
    # 10-bit video get shorter chunks (64 MB: 5 frames of 4K 8-bit 4:2:0, 2 of 4K 10-bit;
    # all 16 at 1080p 8-bit).
    chunk_megabytes: int = 64
    # Chunks buffered between decode -> stages and stages -> encode. 1 is enough to overlap
    # the three; more only costs memory.
    queue_depth: int = 1
    # Scale of the RGB analysis copy decoded beside each full-resolution frame (DESIGN: faces
    # are detected at quarter resolution). 0 disables the copy.
    analysis_scale: float = 0.25
    # Decoder threads; 0 lets FFmpeg choose (one per core).
    decode_threads: int = 0


@dataclass(frozen=True)
class EncodeConfig:
    """The output file: video codec, audio handling and the length policy."""

    # x264 (default, 8- or 10-bit H.264), x265 (HEVC, 8/10/12-bit), prores (ProRes 422 HQ,
    # 10-bit), ffv1 (lossless, any depth).
    codec: str = "x264"
    # Quality for x264/x265 (lower is better; 18 is visually transparent for most film).
    crf: int = 18
    # x264/x265 speed preset (ultrafast ... veryslow).
    speed: str = "medium"
    # Audio codec of the dub track; empty = chosen for the container (aac in mp4, pcm in mov,
    # flac in mkv).
    audio_codec: str = ""
    # Bit rate for lossy audio codecs.
    audio_bitrate: str = "192k"
    # Keep the input's first audio stream as a second, labelled track.
    keep_original_audio: bool = False
    # ISO 639-2 language tag written on the dub track ("hin", "fra", ...); empty = untagged.
    dub_language: str = ""
    # A dub track whose length differs from the picture by more than one frame is an error
    # instead of being padded with silence or cut.
    strict_length: bool = False
    # Encoder threads; 0 = one per core. A resumable render pins the number it used (the
    # same frames give the same bytes only with the same threads).
    threads: int = 0


@dataclass(frozen=True)
class RuntimeConfig:
    """Where the model stages run."""

    # auto (CUDA when present, else CPU), cpu, cuda or cuda:N.
    device: str = "auto"
    # CPU threads for the model stages; 0 = half the cores (at least 1), since decoding and
    # the ffmpeg encoder run beside them: more threads than cores makes torch spin, not work.
    threads: int = 0
    # Skip face analysis and the model stages: the picture is re-encoded unchanged and the
    # dub muxed in (a re-mux that keeps the timeline rules; also the media benchmark).
    passthrough: bool = False
    # Seconds of picture per segment of a resumable render (dubber/segments.py): each is
    # encoded to its own file and the files are joined losslessly, so a killed run resumes
    # (`dub --resume`) from the first missing segment. Rounded to whole chunks. 0 = one
    # encode of the whole title, not resumable.
    segment_seconds: float = 10.0


FACE_DETECTORS = ("mediapipe", "s3fd")


@dataclass(frozen=True)
class FacesConfig:
    """Face detection, tracking, shot cuts and speaker selection (the analysis pass)."""

    # mediapipe (full-range BlazeFace, shipped in the wheel) or s3fd (the paper's detector,
    # through face-alignment; needs s3fd-619a316812.pth already in the torch hub cache).
    detector: str = "mediapipe"
    # Detection runs on frames scaled by this (DESIGN: a quarter of full resolution), but
    # never below 256 pixels on the shorter side (faces.analyze.MIN_DETECT_SIDE).
    detect_scale: float = 0.25
    # Detections scoring below this are ignored.
    min_score: float = 0.5
    # Square tiles, side as a fraction of the shorter frame side, scanned so that faces too
    # small for the whole-frame pass (under ~6% of the frame width) are found. 0 disables.
    tile_size: float = 0.6
    # Overlap between neighbouring tiles, as a fraction of the tile side.
    tile_overlap: float = 0.2
    # Scan the tiles every this many frames (and on the first frame of every shot); known
    # faces are followed in between by detection in a window around their last box.
    tile_every: int = 10
    # Side of that window around a known face, in face sizes.
    roi_scale: float = 3.0
    # Run the whole-frame pass every this many frames (and on the first frame of a shot, and
    # whenever no face is being followed); known faces are followed in their windows.
    full_every: int = 3
    # Boxes of two detections in consecutive frames must overlap this much (IoU) to be the
    # same track; a centre within half a face size also counts.
    match_iou: float = 0.3
    # Gaps of up to this many frames inside a track are bridged (boxes interpolated).
    max_gap: int = 12
    # Tracks with fewer detected frames than this are dropped.
    min_track_frames: int = 10
    # Tracks whose median box side is below this fraction of the frame's shorter side are
    # dropped (faces too small to re-render; DESIGN: tiny faces are left alone).
    min_face_size: float = 0.04
    # Gaussian smoothing of the box centre and size over time, in frames (0 = none). The
    # filter is centred and never crosses a shot cut, so boxes do not lag.
    smooth_center: float = 2.0
    smooth_size: float = 4.0
    # Shot cuts: PySceneDetect's AdaptiveDetector threshold (content change relative to
    # the neighbouring frames' average) and the shortest shot in frames.
    cut_threshold: float = 3.0
    min_shot_frames: int = 8
    # Speaker selection: sliding windows of this many seconds, moved by half a window.
    speaker_window: float = 3.0
    # A track speaks in a window when its lip aperture correlates with the original audio's
    # speech envelope at least this much (Pearson r, best lag up to speaker_max_lag seconds;
    # measured on the test clips: talking faces 0.2 to 0.8 per 3 s window, chance about
    # +-0.17) and its lips open visibly (faces.speaker.MIN_APERTURE_RANGE).
    speaker_min_corr: float = 0.2
    speaker_max_lag: float = 0.12
    # Windows whose speech envelope is quieter than this (dB below the clip's loud level)
    # have no speaker.
    speech_floor_db: float = 30.0
    # Speaking runs shorter than this many seconds are absorbed by their neighbours.
    min_speaking: float = 1.0
    # The cue that picks the speaker: "sync" (the sync model on face-mesh lips,
    # dubber.sync.speaker: whose lips are in sync with the original audio) or "envelope"
    # (the correlation of lip opening with the speech envelope, the older cue).
    speaker_cue: str = "sync"
    # "sync": a face speaks where the sync model's confidence at its track's offset over a
    # speaker_window span reaches this (median minus minimum of the mean distance over
    # +-15 frames of offset). Measured with the shipped model: talking faces 0.1 to 0.3,
    # a dancer's lips against music at most 0.066, a silent face 0.043 (weights/README.md).
    speaker_min_sync: float = 0.07
    # Which faces are re-rendered: speaker (by the audio), largest, all, or a track id.
    face: str = "speaker"
    # Feather of the soft mouth mask (Face.mouth_mask), as a fraction of the mouth width.
    # (The crop's margin and size are models.crop_scale and the models' resolution.)
    mask_feather: float = 0.15


@dataclass(frozen=True)
class WeightNames:
    """Which manifest entry (``weights/manifest.yaml``) each model loads; "" = none."""

    face_vqgan: str = ""  # Face-VQGAN
    pose_vqgan: str = ""  # Pose-VQGAN (lower face masked)
    sync_expert: str = ""  # lip-sync expert (training only; inference does not load it)
    generator: str = ""  # lip-sync generator
    gpen: str = ""  # GPEN face restorer (loaded only when models.gpen_enabled)
    # The sync model on face-mesh lips (speaker choice, check-sync); tiny and shipped, so
    # every preset loads it, the unittest one included.
    lip_sync: str = "lip-sync"


@dataclass(frozen=True)
class ModelsConfig:
    """Model sizes and the stages that use them (DESIGN steps 2-6)."""

    # Architecture of each network. A weight file carries its own dimensions; they must equal
    # these (so a preset never silently runs other models than it describes).
    face_vqgan: VQGANDims = field(default_factory=VQGANDims)
    pose_vqgan: VQGANDims = field(default_factory=VQGANDims)
    sync_expert: SyncNetDims = field(default_factory=SyncNetDims)
    generator: GeneratorDims = field(default_factory=GeneratorDims)
    gpen: GPENDims = field(default_factory=GPENDims)
    lip_sync: LipSyncDims = field(default_factory=LipSyncDims)
    # Manifest names of the weights to load.
    weights: WeightNames = field(default_factory=WeightNames)
    # Build seeded, randomly initialised models and load no file (the unittest preset only).
    random_init: bool = False
    # Seed for random_init.
    seed: int = 0
    # Pose-VQGAN input: rows from this fraction of the crop height down are blanked (0.5 =
    # the lower half, as in the paper).
    pose_mask_from: float = 0.5
    # Side of the square crop around a face box, as a multiple of the box's longer side
    # (the paper crops 768 px around a roughly 550 px face at 4K).
    crop_scale: float = 1.4
    # Reference frame for the generator's identity input: "track_first" (the first frame
    # seen of each face track, kept for the whole run: stable texture) or "self" (the frame
    # itself: no drift, but its own mouth can leak into the result).
    reference: str = "track_first"
    # How the generated face goes back into the frame: "mouth" (the lip region grown by
    # paste_feather mouth widths, soft-edged; the rest of the face stays as decoded) or
    # "box" (the whole square is replaced).
    paste: str = "mouth"
    # Grow and blur radius of the "mouth" paste, in mouth widths.
    paste_feather: float = 0.3
    # "mouth" paste: the region covers the lips as if open to at least this many mouth
    # widths tall (swept down from the upper lip), so it hardly moves while the original
    # speaker talks and the original mouth does not show at its edge; 0 follows the lips.
    paste_open: float = 0.65
    # "mouth" paste: weight of the model's colour (chroma) against colour drawn from the
    # face itself (its skin, and its lips' tint where the new mouth is dark); 0 takes only
    # the new mouth's brightness from the model (see dubber/stages/paste.py).
    paste_chroma: float = 1.0
    # Colour matching before the paste: the generated face takes the original crop's colour
    # blurred by this fraction of the crop width (0 = off); see dubber/stages/paste.py.
    paste_color_sigma: float = 0.12
    # Generators with an aperture cue: how far the drawn mouth opens and closes, as a factor
    # on the opening predicted from the dub (standardised: 0 the speaker's usual opening,
    # +-1 a typical swing). A predictor that is right only in part shrinks its guesses to
    # the mean; a gain above 1 gives the mouth back the swing of real speech.
    aperture_gain: float = 1.0
    # Run GPEN over the generated faces (stage 2).
    gpen_enabled: bool = False
    # Faces per forward pass of each model.
    batch_size: int = 16
    # Autocast precision on CUDA: fp32, fp16 or bf16. The CPU always runs fp32.
    precision: str = "fp32"


@dataclass(frozen=True)
class MouthConfig:
    """The mouth renderer (see ``dubber/mouth/``): the actor's own mouths from the film,
    chosen to match the dub, warped and blended at full resolution."""

    # "bank": the actor's own mouths (the VQ generator draws only the frames the bank has no
    # close match for); "generator": the VQ generator for every frame (the paper's path,
    # for GPU-trained weights).
    renderer: str = "bank"
    # Most lower-face crops kept per track (whole runs chosen for the variety of their
    # mouths beyond that): about 0.2 MB each at 1080p, 1 MB at 4K, on disk in the cache.
    bank_frames: int = 1500
    # Cheapest bank frames considered per dubbed frame by the shortest path.
    candidates: int = 24
    # Cost weights (eye-distance units): mouth parameters (opening, width, rounding),
    # head pose, light (the colour match corrects the light's level, so it weighs little),
    # and blowing up a smaller face (log of the scale, squared). Width and rounding at 0.25 /
    # 0.5 / 1 of the opening's weight, over 8 dubs (`python -m dubber.bench dubs`, mean
    # confidence): 0.160 / 0.158 / 0.148, the first better on 4 of the 8: within the noise.
    param_weights: tuple[float, float, float] = (1.0, 0.5, 0.5)
    pose_weight: float = 0.25
    light_weight: float = 0.5
    scale_weight: float = 0.05
    # A bank mouth much blurrier than the frame's own (log of the ratio of their sharpness
    # beyond detail_margin, squared) is passed over for a sharp one of the same shape. The
    # margin leaves speech its natural motion blur: without it the path prefers still
    # mouths, and the dub reads out of sync.
    detail_weight: float = 0.1
    detail_margin: float = 0.3
    # Path costs: jumping to a bank frame that does not follow the last one; showing the
    # same bank frame again (moving on to the next bank frame is free). A dearer jump keeps
    # longer runs of real motion but follows the dub less closely: 0.01 left a 5 s clip's
    # dub out of sync (confidence 0.035) where 0.003 is in sync (0.11), flicker 1.04 -> 1.11.
    # Re-checked over 8 dubs (`python -m dubber.bench dubs`, mean confidence): 0.0015 /
    # 0.003 / 0.006 -> 0.155 / 0.158 / 0.153.
    jump: float = 0.003
    hold: float = 0.001
    # Frames over which a jump is morphed from the old run into the new one, and over which
    # the new mouth morphs in from and out to the frame's own at the ends of a speaking
    # window. Every morphed frame is a little softer (measured: crossfade 3 kept 0.85-0.93
    # of the input's sharpness, 1 keeps 0.94-0.99) and no steadier (flicker 0.92-1.03 of
    # the input's either way).
    crossfade: int = 1
    fade: int = 3
    # The same actor's other shots (dubber/mouth/actors.py): their mouths may be shown too,
    # at this extra cost per frame (own shot first); two tracks are the same actor when
    # their face shapes and lower-face colours are this close; at most this many other
    # shots' frames per track.
    other_shots: bool = True
    other_shot: float = 0.0005
    link_shape: float = 0.03
    link_colour: float = 0.006
    other_frames: int = 1500
    # A frame whose best bank frame costs more than this is drawn by the VQ generator.
    max_cost: float = 0.05
    # Hands before the face (dubber/faces/hands.py): found around every dubbed face when
    # the bank is built; the render leaves them in front of the new mouth (on the frame and
    # its two neighbours: a hand the landmarker misses on one frame, or smears by moving,
    # is still left), and no bank frame a hand covers is drawn from.
    keep_hands: bool = True
    # The drawn region's soft edge, and how far it reaches below the chin (eye distances).
    feather: float = 0.12
    below_chin: float = 0.12
    # Blur of the colour match (eye distances): the target's skin tone and light at this
    # scale replace the bank frame's.
    colour_sigma: float = 0.25


@dataclass(frozen=True)
class WatermarkConfig:
    """The invisible watermark in every face the render changes (dubber/watermark.py)."""

    # Write it (after the paste). Off only for experiments: DESIGN marks every changed face.
    enabled: bool = True
    # The 32-bit payload, 8 hex digits; `dub verify-watermark` looks for it by default.
    payload: str = "d0bbe125"
    # Quantisation step of the blocks' largest singular value, in 8-bit luma units of the
    # 128x128 face square (invisible-watermark's "scale"). Larger survives harder
    # re-encoding and rescaling and shows more; the default keeps faces above 40 dB PSNR.
    strength: float = 64.0
    # Verification: a face carries the payload when at most this many of its 64 bits differ.
    max_bit_errors: int = 10
    # Verification: faces narrower than this many pixels are not read (too small to carry
    # the mark through re-encoding).
    min_face: int = 40


@dataclass(frozen=True)
class Config:
    """The whole configuration of one run. Build it with :func:`load_config`."""

    preset: str = ""
    media: MediaConfig = field(default_factory=MediaConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    mouth: MouthConfig = field(default_factory=MouthConfig)
    watermark: WatermarkConfig = field(default_factory=WatermarkConfig)

    def __post_init__(self) -> None:
        _validate(self)


def _non_finite(obj, prefix: str = "") -> tuple[str, Any] | None:
    """The dotted name and value of the first float setting that is NaN or infinite (YAML's
    .nan and .inf are floats, and NaN passes every range check below), or None."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            found = _non_finite(value, name + ".")
            if found:
                return found
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            return name, value
    return None


def _validate(cfg: Config) -> None:
    bad = _non_finite(cfg)
    if bad:
        raise UsageError(f"{bad[0]} must be a finite number, got {bad[1]!r}")
    m, e = cfg.media, cfg.encode
    if m.chunk_frames < 1:
        raise UsageError(f"chunk_frames must be at least 1, got {m.chunk_frames}")
    if m.chunk_megabytes < 1:
        raise UsageError(f"chunk_megabytes must be at least 1, got {m.chunk_megabytes}")
    if m.queue_depth < 1:
        raise UsageError(f"queue_depth must be at least 1, got {m.queue_depth}")
    if not 0 <= m.analysis_scale <= 1:
        raise UsageError(f"analysis_scale must be between 0 and 1, got {m.analysis_scale}")
    if e.codec not in VIDEO_CODECS:
        raise UsageError(f"unknown video codec {e.codec!r}; choose one of {', '.join(VIDEO_CODECS)}")
    if not 0 <= e.crf <= 51:
        raise UsageError(f"crf must be between 0 and 51, got {e.crf}")
    problem = language_problem(e.dub_language)
    if problem:
        raise UsageError(f"--dub-language {problem}")
    _validate_faces(cfg.faces)
    _validate_models(cfg.models)
    _validate_mouth(cfg.mouth)
    _validate_watermark(cfg.watermark)
    if cfg.runtime.segment_seconds < 0 or cfg.encode.threads < 0:
        raise UsageError("runtime.segment_seconds and encode.threads must be 0 or more")
    if cfg.runtime.threads < 0:
        raise UsageError(f"runtime.threads must be 0 (auto) or more, got {cfg.runtime.threads}")
    dev = cfg.runtime.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise UsageError(f"unknown device {dev!r}; use auto, cpu, cuda or cuda:N")


def _validate_faces(f: FacesConfig) -> None:
    if f.speaker_cue not in ("sync", "envelope"):
        raise UsageError(f"faces.speaker_cue must be sync or envelope, got {f.speaker_cue!r}")
    if f.detector not in FACE_DETECTORS:
        raise UsageError(
            f"unknown face detector {f.detector!r}; choose one of {', '.join(FACE_DETECTORS)}"
        )
    if not 0 < f.detect_scale <= 1:
        raise UsageError(f"faces.detect_scale must be in (0, 1], got {f.detect_scale}")
    if not 0 <= f.tile_size < 1 or not 0 <= f.tile_overlap < 1:
        raise UsageError("faces.tile_size and faces.tile_overlap must be in [0, 1)")
    if min(f.tile_every, f.full_every, f.min_track_frames) < 1 or f.max_gap < 0:
        raise UsageError(
            "faces.tile_every, faces.full_every and faces.min_track_frames must be at least 1"
        )
    if not 0 < f.mask_feather <= 1:
        raise UsageError(f"faces.mask_feather must be in (0, 1], got {f.mask_feather}")
    if f.speaker_window <= 0:
        raise UsageError(f"faces.speaker_window must be positive, got {f.speaker_window}")
    if not (f.face in ("speaker", "largest", "all") or f.face.isdigit()):
        raise UsageError(f"--face must be speaker, largest, all or a track id, got {f.face!r}")


def _validate_mouth(m: MouthConfig) -> None:
    if m.renderer not in ("bank", "generator"):
        raise UsageError(f"unknown mouth.renderer {m.renderer!r}; use bank or generator")
    if m.bank_frames < 1 or m.candidates < 1:
        raise UsageError("mouth.bank_frames and mouth.candidates must be at least 1")
    if min(m.crossfade, m.fade) < 0:
        raise UsageError("mouth.crossfade and mouth.fade must be 0 or more")
    if min(*m.param_weights, m.pose_weight, m.light_weight, m.scale_weight, m.detail_weight,
           m.jump, m.hold, m.max_cost, m.other_shot, m.link_shape, m.link_colour,
           m.other_frames) < 0:
        raise UsageError("mouth cost weights, link thresholds and other_frames must be 0 or "
                         "more")
    if not 0 < m.feather <= 1 or not 0 <= m.below_chin <= 1 or not 0 < m.colour_sigma <= 2:
        raise UsageError("mouth.feather must be in (0, 1], mouth.below_chin in [0, 1], "
                         "mouth.colour_sigma in (0, 2]")


def _validate_models(m: ModelsConfig) -> None:
    if m.reference not in ("track_first", "self"):
        raise UsageError(f"unknown models.reference {m.reference!r}; use track_first or self")
    if m.paste not in ("mouth", "box"):
        raise UsageError(f"unknown models.paste {m.paste!r}; use mouth or box")
    if not 0 < m.paste_feather <= 2:
        raise UsageError(f"models.paste_feather must be in (0, 2], got {m.paste_feather}")
    if not 0 <= m.paste_open <= 2:
        raise UsageError(f"models.paste_open must be in [0, 2], got {m.paste_open}")
    if not 0 <= m.paste_chroma <= 1:
        raise UsageError(f"models.paste_chroma must be in [0, 1], got {m.paste_chroma}")
    if not 0 <= m.paste_color_sigma <= 1:
        raise UsageError(f"models.paste_color_sigma must be in [0, 1], got {m.paste_color_sigma}")
    if not 0 <= m.aperture_gain <= 10:
        raise UsageError(f"models.aperture_gain must be in [0, 10], got {m.aperture_gain}")
    if m.precision not in ("fp32", "fp16", "bf16"):
        raise UsageError(f"unknown models.precision {m.precision!r}; use fp32, fp16 or bf16")
    if m.batch_size < 1:
        raise UsageError(f"models.batch_size must be at least 1, got {m.batch_size}")
    if not 0 <= m.pose_mask_from <= 1:
        raise UsageError(f"models.pose_mask_from must be between 0 and 1, got {m.pose_mask_from}")
    if m.crop_scale < 1:
        raise UsageError(f"models.crop_scale must be at least 1, got {m.crop_scale}")
    fv, pv, g, s = m.face_vqgan, m.pose_vqgan, m.generator, m.sync_expert
    if (fv.embed_dim, fv.grid) != (pv.embed_dim, pv.grid) or fv.resolution != pv.resolution:
        raise UsageError("models.face_vqgan and models.pose_vqgan must share resolution, "
                         "embed_dim and code grid")
    for name, d in (("generator", g), ("sync_expert", s)):
        if (d.embed_dim, d.grid) != (fv.embed_dim, fv.grid):
            raise UsageError(f"models.{name} embed_dim/grid ({d.embed_dim}, {d.grid}) must match "
                             f"the Face-VQGAN's ({fv.embed_dim}, {fv.grid})")


def _validate_watermark(w: WatermarkConfig) -> None:
    from dubber.watermark import N_BITS, parse_payload

    try:
        parse_payload(w.payload)
    except ValueError as exc:
        raise UsageError(f"watermark.payload: {exc}") from None
    if not 4 <= w.strength <= 255:
        raise UsageError(f"watermark.strength must be in [4, 255], got {w.strength}")
    if not 0 <= w.max_bit_errors < N_BITS // 4:
        raise UsageError(f"watermark.max_bit_errors must be in [0, {N_BITS // 4}), "
                         f"got {w.max_bit_errors}")
    if w.min_face < 16:
        raise UsageError(f"watermark.min_face must be at least 16, got {w.min_face}")


def available_presets() -> list[str]:
    """Names of the presets in the presets folder, sorted."""
    return sorted(p.stem for p in _presets_dir().glob("*.yaml"))


def _presets_dir() -> Path:
    return Path(os.environ.get("DUBBER_PRESETS", PRESETS_DIR))


def _preset_file(preset: str) -> Path:
    as_path = Path(preset)
    if preset.endswith((".yaml", ".yml")):
        if not as_path.is_file():
            raise UsageError(f"preset file {preset} does not exist")
        return as_path
    path = _presets_dir() / f"{preset}.yaml"
    if not path.is_file():
        names = ", ".join(available_presets()) or "none found"
        raise UsageError(f"unknown preset {preset!r}; available presets: {names}")
    return path


def read_preset(preset: str) -> dict[str, dict[str, Any]]:
    """The raw ``{section: {field: value}}`` mapping of a preset name or YAML path."""
    path = _preset_file(preset)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"preset {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise UsageError(f"preset {path} must be a mapping of sections")
    return data


def load_config(
    preset: str | None = DEFAULT_PRESET,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build a :class:`Config`: dataclass defaults < preset < ``overrides``.

    Args:
        preset: preset name (a file in ``presets/``), a path to a YAML file, or None for the
            bare defaults.
        overrides: ``{section: {field: value}}``; values of None are ignored, so a CLI can
            pass every option and let unset ones fall through to the preset.
    """
    layers: list[Mapping[str, Any]] = []
    if preset:
        layers.append(read_preset(preset))
    if overrides:
        layers.append(
            {s: {k: v for k, v in vals.items() if v is not None} for s, vals in overrides.items()}
        )
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if f.name == "preset":
            continue
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer.get(f.name) or {})
        sections[f.name] = _build_section(hints[f.name], f.name, merged)
    for layer in layers:
        unknown = set(layer) - set(sections)
        if unknown:
            raise UsageError(
                f"unknown configuration section(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sections)}"
            )
    name = Path(preset).stem if preset else ""
    return Config(preset=name, **sections)


def _build_section(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise UsageError(
            f"unknown setting(s) {', '.join(f'{section}.{k}' for k in sorted(unknown))}"
        )
    return cls(**{k: _coerce(hints[k], f"{section}.{k}", v) for k, v in values.items()})


def _coerce(typ: Any, name: str, value: Any) -> Any:
    """Check ``value`` against the annotation ``typ``; ints are accepted for floats and
    lists for tuples. Nested dataclasses are built from mappings."""
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, Mapping):
            raise UsageError(f"{name} must be a mapping")
        return _build_section(typ, name, value)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, name, value)
            except UsageError:
                continue
        raise UsageError(f"{name} has the wrong type: {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{name} must be a list, got {value!r}")
        args = typing.get_args(typ)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], name, v) for v in value)
        if len(args) != len(value):
            raise UsageError(f"{name} must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, name, v) for a, v in zip(args, value))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ in (int, float, str, bool):
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise UsageError(f"{name} must be {typ.__name__}, got {value!r}")
        return value
    return value
