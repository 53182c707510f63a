"""Training data for the sync model: lip sequences and log-mel of talking-head videos.

``dub train sync-model --videos V...`` (or :func:`extract_video` directly) runs the faces
analysis pass (:mod:`dubber.faces.analyze`: detection, tracking, face mesh) on each video,
keeps every track with at least ``MIN_GRID_FRAMES`` readable frames, and stores per video
one ``.npz`` in a cache folder: the tracks' :class:`~dubber.sync.features.LipSequence`
arrays and the whole soundtrack's log-mel (step 0 = the first video frame's time). The
videos are split into train and validation as whole videos.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dubber.errors import InputError
from dubber.sync.features import MEL_PER_FRAME, LipSequence, mel_span, track_sequence

log = logging.getLogger(__name__)

MIN_GRID_FRAMES = 50  # 2 s: shorter tracks add too few windows to be worth keeping
DATA_VERSION = 1  # bump when what extract_video stores changes


@dataclass
class VideoData:
    """One video's training material.

    Attributes:
        name: the video's file name.
        seqs: the readable tracks' lip sequences on the 25 fps grid.
        mel: shape = (N_MELS, M) float32: log-mel, step ``j`` = grid frame ``j / 4``.
    """

    name: str
    seqs: list[LipSequence]
    mel: np.ndarray


def analyse_tracks(video: str | Path, cfg=None, info=None, progress=None):
    """The analysis pass over ``video`` with no speaker selection: (Tracks with lip points,
    frame times in seconds from the first frame, VideoInfo). ``info``: the probe, when the
    caller has it; ``progress``: called with frames done."""
    from dubber.config import load_config
    from dubber.faces.analyze import analyze_chunks, detection_scale
    from dubber.media.color import ColorSpec
    from dubber.media.decode import read_chunks
    from dubber.media.probe import probe

    cfg = cfg or load_config("fast")
    info = info or probe(video)
    scale = detection_scale(cfg.faces.detect_scale, info.width, info.height)
    times: list[np.ndarray] = []

    def chunks():
        it = read_chunks(info, cfg.media.chunk_frames, scale, full=True,
                         queue_depth=cfg.media.queue_depth, threads=cfg.media.decode_threads)
        try:
            for c in it:
                times.append(np.asarray(c.times, np.float64))
                yield c
        finally:
            it.close()

    tracks = analyze_chunks(
        chunks(), info.width, info.height, info.frame_rate, cfg.faces, None, scale,
        progress=progress, rotation=info.rotation, select_speakers=False,
        color=ColorSpec.from_names(info.color.matrix, info.color.range, info.width, info.height))
    t = np.concatenate(times)[: tracks.frame_count]
    return tracks, t, info


def extract_video(video: str | Path, cfg=None) -> VideoData:
    """Lip sequences of every readable track of ``video`` and its soundtrack's log-mel."""
    from dubber.media.audio import load_audio

    tracks, times, _ = analyse_tracks(video, cfg)
    # From the sound's first sample, not as it plays with the picture (load_audio's
    # from_picture): training finds and removes each video's own offset, and the shipped
    # weights were made so (weights/README: address_fr_512_50s, kept as cut)
    audio = load_audio(video)
    seqs = []
    for tr in tracks.tracks:
        seq = track_sequence(tr.lips, times[tr.first: tr.last + 1])
        if seq.readable.sum() >= MIN_GRID_FRAMES:
            seqs.append(seq)
    n_steps = int(np.ceil(len(audio) / 160)) + 1
    mel = mel_span(audio, 0, n_steps).numpy()
    log.info("%s: %d tracks, %d readable grid frames", Path(video).name, len(seqs),
             sum(int(s.readable.sum()) for s in seqs))
    return VideoData(Path(video).name, seqs, mel)


def save_video(data: VideoData, path: Path) -> None:
    arrays = {"mel": data.mel.astype(np.float16),
              "starts": np.array([s.start for s in data.seqs], np.int64)}
    for i, s in enumerate(data.seqs):
        arrays[f"feats{i}"] = s.feats.astype(np.float16)
        arrays[f"readable{i}"] = s.readable
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, version=DATA_VERSION, name=data.name, **arrays)
    tmp.replace(path)


def load_video(path: Path) -> VideoData:
    with np.load(path) as z:
        if int(z["version"]) != DATA_VERSION:
            raise InputError(f"{path} was made by another version of the sync data extraction")
        seqs = [LipSequence(int(st), z[f"feats{i}"].astype(np.float32), z[f"readable{i}"])
                for i, st in enumerate(z["starts"])]
        return VideoData(str(z["name"]), seqs, z["mel"].astype(np.float32))


def dataset(videos: list[str | Path], cache: Path, cfg=None, progress=None) -> list[VideoData]:
    """:func:`extract_video` for each video, cached in ``cache`` by file name and size."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for v in videos:
        v = Path(v)
        if not v.is_file():
            raise InputError(f"{v} does not exist")
        path = cache / f"{v.stem}-{v.stat().st_size}.npz"
        if path.is_file():
            out.append(load_video(path))
        else:
            d = extract_video(v, cfg)
            save_video(d, path)
            out.append(d)
        if progress:
            progress(v.name)
    return out


def mel_frames(data: VideoData) -> int:
    """Grid frames the video's mel covers."""
    return data.mel.shape[1] // MEL_PER_FRAME
