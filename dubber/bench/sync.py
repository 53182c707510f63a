"""Benchmark and calibration of the sync model on face-mesh lips.

``python -m dubber.bench sync [--media DIR] [--json] [--calibrate] [--speakers]``

- speed: the sync scoring in video frames per second (lips already measured; all offsets
  of every window), the analysis pass that measures the lips, and training steps per
  second; the published model's training minutes from its manifest entry.
- ``--calibrate``: on videos the model never trained on (the held-back corpus videos and
  the talking clips), with ``dub check-sync``'s own code: own audio judged in sync; other
  speech from ``speech/`` judged out of sync; the own audio shifted by k = +-3, +-6, +-10
  video frames found at k +- 1.
- ``--speakers``: speaker coverage from the ORIGINAL audio (the analysis pass's choice):
  Katie's share of frames, the split-screen interview against the hand-labelled fixture
  ``tests/data/two_faces_speakers.json``, and the clips with no speaker.

One figure per line (``name: value unit``), or ``--json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from dubber.bench.media import SHARED_MEDIA
from dubber.bench.report import Report, add_json_flag

MEDIA = SHARED_MEDIA
HELD_BACK = ("corpus/address_en_512_10s.mp4", "corpus/congress_en_256_60s.mp4")
TALKING = ("clips/katie_512_mpeg4_en.mp4", "clips/kim_1080p30_en.mp4",
           "clips/man_map_844_en.mp4", "clips/man_portrait1080_hevc25.mp4",
           "clips/woman_glasses_524_en.mp4", "clips/woman_smallface_hevc25.mp4",
           "clips/profile_turn_224_en.mp4", "clips/two_faces_splitscreen_720p.mp4",
           "clips/youtuber_cutaway_720p30.mov")
SPEECH = ("en_commentary_60s.wav", "en_jfk.flac", "en_lecture_21s.wav", "en_kimk_8s.mp3",
          "hi_news_22s.wav", "zh_news_8s.wav", "en_radio_8s.wav", "en_vlog_10s.wav",
          "zh_read_4s.wav")
SHIFTS = (-10, -6, -3, 3, 6, 10)
FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "data" / "two_faces_speakers.json"


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` looped or cut to ``n`` samples."""
    if len(x) >= n:
        return x[:n].copy()
    return np.tile(x, n // len(x) + 1)[:n].copy()


def shift_audio(x: np.ndarray, samples: int) -> np.ndarray:
    """Delay (samples > 0) or advance ``x``, same length, silence filled in."""
    out = np.zeros_like(x)
    if samples >= 0:
        out[samples:] = x[: len(x) - samples]
    else:
        out[:samples] = x[-samples:]
    return out


def found_offset(report) -> float | None:
    """The speech-weighted median offset (video frames) of the confident segments."""
    segs = [s for s in report.segments if s.offset_frames is not None]
    conf = [s for s in segs if s.confidence >= report.settings.min_confidence] or segs
    if not conf:
        return None
    offs = np.repeat([s.offset_frames for s in conf], [max(s.speech_frames, 1) for s in conf])
    return float(np.median(offs))


def calibrate(media: Path, log=print) -> dict:
    from dubber.config import load_config
    from dubber.media.audio import load_audio
    from dubber.sync.check import check_analysis
    from dubber.sync.data import analyse_tracks
    from dubber.sync.speaker import load_sync_model

    cfg = load_config("fast")
    model = load_sync_model(cfg)
    speech = [load_audio(media / "speech" / s) for s in SPEECH]
    own_ok = other_ok = shift_ok = rel_ok = 0
    n_own = n_other = n_shift = 0
    rows = []
    for i, rel in enumerate(HELD_BACK + TALKING):
        path = media / rel
        if not path.is_file():
            continue
        analysis = analyse_tracks(path, cfg)
        fps = float(analysis[2].frame_rate)
        audio = load_audio(path)
        own = check_analysis(analysis, audio, model)
        n_own += 1
        own_ok += own.verdict == "in sync"
        others = []
        for j in range(2):
            other = _fit(speech[(2 * i + j) % len(speech)], len(audio))
            r = check_analysis(analysis, other, model)
            n_other += 1
            other_ok += r.verdict != "in sync"
            others.append(f"{r.verdict} ({100 * r.share_in_sync:.0f}%)")
        shifts = []
        own_off = found_offset(own) or 0.0
        for k in SHIFTS:
            r = check_analysis(analysis, shift_audio(audio, int(round(k / fps * 16000))), model)
            off = found_offset(r)
            ok = off is not None and abs(off - k) <= 1
            n_shift += 1
            shift_ok += ok
            rel_ok += off is not None and abs(off - own_off - k) <= 1
            shifts.append(f"{k:+d}->{'-' if off is None else f'{off:+.0f}'}")
        row = (f"{Path(rel).name}: own {own.verdict} ({100 * own.share_in_sync:.0f}%, "
               f"offset {found_offset(own)}); other speech: {', '.join(others)}; "
               f"shifts {' '.join(shifts)}")
        rows.append(row)
        log(row)
    return {
        "own_audio_in_sync": own_ok / max(n_own, 1),
        "other_speech_out_of_sync": other_ok / max(n_other, 1),
        "shift_found_within_1": shift_ok / max(n_shift, 1),
        # the same, measured from the offset found with the unshifted own audio (several
        # clips sit 1-2 frames off their own audio)
        "shift_found_within_1_of_own": rel_ok / max(n_shift, 1),
        "videos": n_own, "other_trials": n_other, "shift_trials": n_shift,
        "rows": rows,
    }


def speakers(media: Path, log=print) -> dict:
    """Speaker coverage figures (analysis pass, no cache)."""
    from dubber.config import load_config
    from dubber.faces.analyze import analyze

    cfg = load_config("fast")
    out = {}

    def run(rel):
        return analyze(media / rel, cfg, cache_dir="/nonexistent-cache-dir/" + str(time.time()))

    katie = run("clips/katie_512_mpeg4_en.mp4")
    sel = [bool(katie.speakers_at(f)) for f in range(katie.frame_count)]
    out["katie_selected_share"] = float(np.mean(sel))
    log(f"katie: selected on {100 * np.mean(sel):.1f}% of {katie.frame_count} frames")
    for rel in ("clips/dancer_tinyface.mp4", "clips/woman_silent_720p30.mp4"):
        t = run(rel)
        share = float(np.mean([bool(t.speakers_at(f)) for f in range(t.frame_count)]))
        out[Path(rel).stem + "_speaker_share"] = share
        log(f"{Path(rel).name}: a speaker on {100 * share:.1f}% of frames (want 0)")
    yt = run("clips/youtuber_cutaway_720p30.mov")
    faceless = [f for f in range(yt.frame_count) if not yt.faces_at(f)]
    cut = [f for f in faceless if yt.speakers_at(f)]
    out["youtuber_cutaway_frames"] = len(faceless)
    out["youtuber_cutaway_speaker_frames"] = len(cut)
    log(f"youtuber cutaway: {len(faceless)} frames without a face, {len(cut)} with a speaker")
    if FIXTURE.is_file():
        tf = run("clips/two_faces_splitscreen_720p.mp4")
        m = two_faces_match(tf, json.loads(FIXTURE.read_text()))
        out.update(m)
        log(f"two faces: {100 * m['two_faces_match']:.1f}% of frames match the fixture, "
            f"handovers off by {m['two_faces_handover_s']}")
    return out


def side_of(tracks, tid: int) -> str:
    """``left`` or ``right``: which half of the frame a track's face is on."""
    t = tracks.track(tid)
    cx = float(np.median((t.boxes[:, 0] + t.boxes[:, 2]) / 2))
    return "left" if cx < tracks.width / 2 else "right"


def two_faces_match(tracks, fixture: dict) -> dict:
    """Agreement with a fixture of ``{"segments": [{"start": s, "end": s, "speaker":
    ["left"] | ["right"] | ["left", "right"]}, ...]}`` (seconds; a list: any of these faces
    speaks there, never none). Frames outside the segments, and within
    ``fixture["tolerance"]`` s of a segment's edge, are not scored. Handover: for each
    labelled change of speaker set, how long (s) after it the selected face first belongs
    to the new set (0 when it already does; a face chosen early is allowed only where the
    segment before accepts it, which the match counts)."""
    fps = float(tracks.frame_rate)
    n = tracks.frame_count
    truth: list = [None] * n
    edge = np.zeros(n, bool)
    tol = int(round(fixture.get("tolerance", 0.3) * fps))
    for seg in fixture["segments"]:
        a, b = int(round(seg["start"] * fps)), min(n, int(round(seg["end"] * fps)))
        for f in range(a, b):
            truth[f] = set(seg["speaker"])
        edge[max(0, a - tol): a + tol] = True
        edge[max(0, b - tol): b + tol] = True
    got = []
    for f in range(n):
        spk = tracks.speakers_at(f)
        got.append(side_of(tracks, spk[0]) if spk else None)
    scored = [f for f in range(n) if truth[f] is not None and not edge[f]]
    agree = [got[f] in truth[f] for f in scored]
    offs = []
    segs = fixture["segments"]
    for prev, seg in zip(segs[:-1], segs[1:]):
        if set(seg["speaker"]) == set(prev["speaker"]):
            continue
        a, b = int(round(seg["start"] * fps)), min(n, int(round(seg["end"] * fps)))
        late = next((f for f in range(a, b) if got[f] in seg["speaker"]), b)
        offs.append((late - a) / fps)
    return {"two_faces_match": float(np.mean(agree)) if agree else 0.0,
            "two_faces_handover_s": [round(o, 2) for o in offs]}


def speed(media: Path) -> dict:
    import torch

    from dubber.config import load_config
    from dubber.media.audio import load_audio
    from dubber.models.dims import LipSyncDims
    from dubber.models.threads import one_torch_thread
    from dubber.sync.data import analyse_tracks
    from dubber.sync.score import track_curves
    from dubber.sync.speaker import load_sync_model, sequences

    cfg = load_config("fast")
    model = load_sync_model(cfg)
    path = media / "corpus" / "congress_en_256_60s.mp4"
    t0 = time.perf_counter()
    tracks, times, info = analyse_tracks(path, cfg)
    t_an = time.perf_counter() - t0
    audio = load_audio(path)
    seqs = sequences(tracks.tracks, times)
    t0 = time.perf_counter()
    for s in seqs.values():
        track_curves(model, s, audio)
    t_sc = time.perf_counter() - t0
    # training speed: steps of the shipped recipe on random data of the real shapes
    from dubber.sync.train import contrastive_loss, SyncModelTrainConfig
    from dubber.sync.model import LipSyncNet

    hp = SyncModelTrainConfig()
    d = LipSyncDims()
    net = LipSyncNet(d)
    opt = torch.optim.AdamW(net.parameters())
    lips = torch.randn(hp.clips * hp.clip_frames, d.frames, 2 * d.points) * 0.05
    mels = torch.randn(hp.clips * (hp.clip_frames + 30), d.n_mels, 4 * d.frames)
    w = torch.ones(hp.clips * hp.clip_frames)
    with one_torch_thread():
        t0 = time.perf_counter()
        for _ in range(20):
            loss = contrastive_loss(net, lips, mels, w, hp.clips, hp.clip_frames)
            opt.zero_grad()
            loss.backward()
            opt.step()
        t_tr = (time.perf_counter() - t0) / 20
    out = {"sync_scoring_fps": tracks.frame_count / t_sc,
           "analysis_pass_fps": tracks.frame_count / t_an,
           "train_steps_per_s": 1 / t_tr}
    from dubber.models.registry import read_manifest, resolve_weights_dir

    e = read_manifest(resolve_weights_dir()).get(cfg.models.weights.lip_sync)
    if e is not None and "train_minutes" in e.figures:
        out["published_train_minutes"] = e.figures["train_minutes"]
    return out


_UNITS = {"fps": "frames/s", "share": "", "minutes": "min", "per_s": "steps/s"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dubber.bench sync", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", type=Path, default=MEDIA, help="the shared media folder")
    add_json_flag(ap)
    ap.add_argument("--calibrate", action="store_true", help="the calibration table")
    ap.add_argument("--speakers", action="store_true", help="speaker coverage figures")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed figures")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    say = (lambda s: None) if args.json == "-" else print
    figures: dict = {}
    if not args.no_speed:
        figures.update(speed(args.media))
    if args.calibrate:
        figures.update(calibrate(args.media, say))
    if args.speakers:
        figures.update(speakers(args.media, say))
    report = Report("sync", args.json)
    for k, v in figures.items():
        if k == "rows":
            report.context["rows"] = v  # the calibration's per-clip rows (JSON only)
            continue
        report.figure(k, v, next((u for s, u in _UNITS.items() if k.endswith(s)), ""))
    report.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
