"""Are the dubs in sync? The sync model's judgement of dubbed outputs over several pairs.

    python -m dubber.bench dubs [--pairs CLIP:DUB ...] [--preset fast] [--weights DIR]
                                [--json [FILE]]

Each CLIP (a shared clip's name, or a path) is dubbed with DUB (a shared speech file's
name, or a path) as ``dub CLIP --audio DUB`` does (the preset's codec and watermark, in a
temporary folder), and ``dub check-sync`` judges the output against the dub: per pair the
mean confidence over its judged shots (the sync curve's dip at its best offset; higher:
the mouth follows the dub more clearly), the share of speech frames in sync and the
verdict. The reference, measured in the same run: the INPUT against the same dub (the
untouched mouth, what no lip sync gives). The means over the pairs are the figures to
compare between two versions of the mouth; one pair's verdict flips easily at confidences
near 0.1 (its shots' peaks must also be sharp), the mean confidence less so.

The default pairs are every shared talking clip of a different voice and language than
its dub (8 pairs; on 2 cores about 2.5 minutes once the analyses and banks are cached).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from dubber.bench.media import SHARED_MEDIA as MEDIA
from dubber.bench.media import shared_file
from dubber.bench.report import Report, add_json_flag

PAIRS = ("kim_1080p30_en:hi_news_22s", "katie_512_mpeg4_en:hi_news_22s",
         "two_faces_splitscreen_720p:hi_news_22s", "woman_glasses_524_en:zh_read_4s",
         "man_map_844_en:zh_news_8s", "woman_smallface_hevc25:en_commentary_60s",
         "man_portrait1080_hevc25:hi_news_22s", "congress_en_256_60s:en_commentary_60s")


def _find(name: str, folders: tuple[str, ...]) -> Path:
    p = Path(name)
    found = p if p.is_file() else shared_file(name, folders)
    if found is None:
        raise SystemExit(f"python -m dubber.bench dubs: no file {name} (nor in {MEDIA})")
    return found


def judged(report) -> dict:
    """Mean confidence over the judged shots, share in sync and verdict of a
    :class:`~dubber.sync.check.SyncReport`."""
    conf = [s.confidence for s in report.judged if s.confidence is not None]
    return {"confidence": float(np.mean(conf)) if conf else float("nan"),
            "share": report.share_in_sync, "verdict": report.verdict}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dubber.bench dubs",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), metavar="CLIP:DUB")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--weights", default=None, help="folder of trained weights")
    add_json_flag(ap)
    a = ap.parse_args(argv)
    pairs = []
    for p in a.pairs:
        clip, sep, dub = p.rpartition(":")
        if not sep or not clip or not dub:
            ap.error(f"{p!r} is not CLIP:DUB")
        pairs.append((_find(clip, ("clips", "corpus")), _find(dub, ("speech",))))
    from dubber.config import load_config
    from dubber.pipeline import dub_video
    from dubber.sync.check import check_sync

    cfg = load_config(a.preset)
    report = Report("dubs", a.json)
    report.info("renderer", cfg.mouth.renderer)
    out_rows, in_rows = [], []
    with tempfile.TemporaryDirectory(prefix="dub-dubs-") as tmp:
        for clip, dub in pairs:
            name = f"{clip.stem} + {dub.stem}"
            out = Path(tmp) / f"{clip.stem}.{dub.stem}.mp4"
            dub_video(clip, dub, out, cfg, weights_dir=a.weights)
            o = judged(check_sync(out, weights_dir=a.weights))
            i = judged(check_sync(clip, dub, weights_dir=a.weights))
            out.unlink()
            out_rows.append(o)
            in_rows.append(i)
            report.figure(f"{name}: output confidence", round(o["confidence"], 4), "")
            report.figure(f"{name}: output share in sync", round(o["share"], 3), "")
            report.figure(f"{name}: output verdict", o["verdict"])
            report.figure(f"{name}: input confidence", round(i["confidence"], 4), "")
    for label, rows in (("output", out_rows), ("input", in_rows)):
        report.figure(f"mean {label} confidence",
                      round(float(np.nanmean([r["confidence"] for r in rows])), 4), "")
        report.figure(f"mean {label} share in sync",
                      round(float(np.mean([r["share"] for r in rows])), 3), "")
    report.figure("outputs in sync", f"{sum(r['verdict'] == 'in sync' for r in out_rows)} "
                  f"of {len(out_rows)}")
    report.close()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
