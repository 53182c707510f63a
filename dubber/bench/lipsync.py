"""Does the re-rendered mouth follow the dub? A benchmark on a real clip and a dub track.

    python -m dubber.bench lipsync CLIP --audio DUB [--preset fast] [--weights DIR] [--json [F]]

It dubs CLIP with DUB (lossless FFV1, in a temporary folder), then measures the lip
aperture of the speaker with the face mesh, frame by frame, on the input and on the output
(the same analysis ``dub inspect`` runs), and correlates each with the speech envelope of
each soundtrack (Pearson r, best lag within +-``--max-lag`` frames, over the frames the
speaker was re-rendered):

- ``input lips ~ original speech``: how well a real mouth follows its own voice by this
  measure (the level a perfect dub would reach);
- ``input lips ~ dub``: the untouched mouth against the dub (what no lip sync gives);
- ``output lips ~ dub``: the re-rendered mouth against the dub: the figure that matters;
- ``output lips ~ original speech``: should fall, since the original mouth is replaced;
- ``output lips ~ input lips``: how much of the original mouth's movement is still in the
  output (lag 0; with a dub unrelated to the original speech a full replacement gives about
  0, an untouched mouth 1);
- the mean absolute change of the aperture.

Correlations of a few seconds of one speaker are noisy: read differences of about 0.1 as
real only on clips of 10 s or more.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from dubber.bench.report import Report, add_json_flag, clip_parser


def _aperture_series(tracks, frames: np.ndarray, boxes: dict[int, tuple]) -> np.ndarray:
    """Per frame in ``frames``: the aperture of the track whose box overlaps ``boxes[f]``
    most, above IoU 0.1 (NaN where none does or the mesh failed)."""
    from dubber.faces.detect import iou

    out = np.full(len(frames), np.nan)
    for n, f in enumerate(frames):
        f = int(f)
        present = [(t, t.box_at(f)) for t in tracks.tracks]
        present = [(t, b) for t, b in present if b is not None]
        if not present:
            continue
        overlaps = iou(np.asarray(boxes[f]), np.asarray([b for _, b in present]))[0]
        k = int(np.argmax(overlaps))
        if overlaps[k] > 0.1:
            t = present[k][0]
            out[n] = t.aperture[f - t.first]
    return out


def _fill(a: np.ndarray) -> np.ndarray:
    """NaNs replaced by linear interpolation (edges held)."""
    ok = np.isfinite(a)
    if ok.sum() < 2:
        return np.zeros_like(a)
    idx = np.arange(len(a))
    return np.interp(idx, idx[ok], a[ok])


def _corr(a: np.ndarray, e: np.ndarray, max_lag: int) -> float:
    from dubber.faces.speaker import best_lag_corr

    return round(best_lag_corr(a, e, max_lag), 3)


def run(clip: str, dub: str, preset: str = "fast", weights: str | None = None,
        max_lag: int = 2) -> dict:
    from dubber.config import load_config
    from dubber.faces.analyze import analyze, open_original_audio
    from dubber.faces.speaker import speech_envelope
    from dubber.media.audio import AudioTrack
    from dubber.media.probe import probe
    from dubber.pipeline import dub_video

    cfg = load_config(preset)
    with tempfile.TemporaryDirectory(prefix="dub-lipsync-") as tmp:
        out = Path(tmp) / "out.mkv"
        dub_video(clip, dub, out, replace(cfg, encode=replace(cfg.encode, codec="ffv1")),
                  weights_dir=weights)
        info = probe(clip)
        before = analyze(clip, cfg, cache_dir=tmp, info=info)
        after = analyze(out, cfg, cache_dir=tmp)
        frames, boxes = [], {}
        for f in range(info.frame_count):
            for tid in before.speakers_at(f):
                frames.append(f)
                boxes[f] = before.track(tid).box_at(f)
                break
        if len(frames) < 25:
            raise SystemExit(f"{clip}: fewer than 25 frames with a speaker; nothing to measure")
        frames = np.asarray(frames)
        times = frames / float(info.frame_rate)
        a_in = _fill(_aperture_series(before, frames, boxes))
        a_out = _fill(_aperture_series(after, frames, boxes))
        orig = open_original_audio(clip, required=True)
        try:
            e_orig = speech_envelope(orig, orig.sample_rate, times)
        finally:
            orig.close()
        with AudioTrack(dub, sample_rate=16000) as d:
            e_dub = speech_envelope(d, d.sample_rate, times)
    return {
        "clip": str(clip),
        "dub": str(dub),
        "preset": preset,
        "frames_measured": int(len(frames)),
        "input_lips_vs_original": _corr(a_in, e_orig, max_lag),
        "input_lips_vs_dub": _corr(a_in, e_dub, max_lag),
        "output_lips_vs_dub": _corr(a_out, e_dub, max_lag),
        "output_lips_vs_original": _corr(a_out, e_orig, max_lag),
        "output_lips_vs_input_lips": _corr(a_out, a_in, 0),
        "aperture_change": round(float(np.mean(np.abs(a_out - a_in))), 4),
        "aperture_mean_input": round(float(np.mean(a_in)), 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = clip_parser("lipsync", __doc__)
    ap.add_argument("--max-lag", type=int, default=2, help="frames of lag allowed (default 2)")
    add_json_flag(ap)
    a = ap.parse_args(argv)
    report = Report("lipsync", a.json)
    res = run(a.clip, a.audio, a.preset, a.weights, a.max_lag)
    for k in ("clip", "dub", "preset"):
        report.info(k, res.pop(k))
    for k, v in res.items():
        report.figure(k, v, "frames" if k == "frames_measured" else "")
    report.close()
    return 0
