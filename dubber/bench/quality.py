"""How good is the dubbed mouth? Sharpness, flicker, untouched pixels, sync.

    python -m dubber.bench quality CLIP --audio DUB [--preset fast] [--weights DIR]
        [--montage OUT.png] [--json [FILE]]

Dubs CLIP with DUB (lossless FFV1, without the watermark, in a temporary folder) and
compares, over the frames
that were dubbed, the output with the input:

- ``sharpness ratio``: the variance of the Laplacian of the luma in the mouth box (the
  speaker's outer lips grown by half a mouth width), output over input (1: as sharp as
  the film; the target is >= 0.9);
- ``flicker ratio``: the mean absolute frame-to-frame change of the luma in the mouth box
  between consecutive dubbed frames, output over input (target <= 1.3);
- ``changed outside the lower face``: pixels that differ above the nose tip or outside the
  face box (target 0);
- ``frames dubbed``: how many frames of the speaker were changed at all;
- the sync check of the output against the dub, and of the input against the dub, when
  the sync model is available.

``--montage`` writes input | output crops of four dubbed frames (mouth open and shut) to
look at.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from dubber.bench.report import Report, add_json_flag, clip_parser


def _luma(path: Path) -> list[np.ndarray]:
    """Every frame's luma as stored (code values of the Y plane, any bit depth): a pixel
    the render left alone reads the same in the input and the output, whatever the range
    flags. (Converting instead would not: FFV1 stores a full-range picture as yuv420p
    flagged "pc", which the conversion reads as limited range, while the input decodes as
    yuvj420p.)"""
    import av

    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if not f.format.name.startswith(("yuv", "gray")):  # RGB-like: convert
                out.append(np.asarray(f.to_ndarray(format="gray"), np.float32))
                continue
            plane = f.planes[0]
            dtype = "<u2" if f.format.components[0].bits > 8 else np.uint8
            y = np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, :plane.width]
            out.append(y.astype(np.float32))
    return out


def _mouth_box(points: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    from dubber.faces.landmarks import LIP_OUTER

    lips = points[list(LIP_OUTER)]
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    g = 0.5 * (x1 - x0)
    h, w = shape
    return (max(int(x0 - g), 0), max(int(y0 - g), 0), min(int(x1 + g), w), min(int(y1 + g), h))


def _laplacian_var(img: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(img, cv2.CV_32F).var())


def measure(clip: str, dub: str, out: Path, cfg, cache: str) -> dict:
    """The figures of one dubbed clip (see the module docstring)."""
    from dubber.faces.analyze import analyze
    from dubber.media.probe import probe
    from dubber.mouth.plan import dubbed_banks

    info = probe(clip)
    tracks = analyze(clip, cfg, cache_dir=Path(cache) / "tracks", info=info)
    banks = dubbed_banks(info, tracks, cfg, cache=cache)
    a, b = _luma(Path(clip)), _luma(out)
    frames, boxes, faces = [], [], []
    for f in range(min(len(a), len(b))):
        for tid in tracks.speakers_at(f):
            bank = banks.get(tid)
            row = None if bank is None else bank.row(f)
            if row is not None:
                frames.append(f)
                boxes.append(_mouth_box(bank.points[row], a[f].shape))
                faces.append((bank.points[row], tracks.track(tid).box_at(f)))
                break
    if not frames:
        raise SystemExit(f"{clip}: no speaker frame with a face mesh; nothing to measure")
    sharp_in, sharp_out, flick_in, flick_out = [], [], [], []
    dubbed = 0
    for n, (f, (x0, y0, x1, y1)) in enumerate(zip(frames, boxes)):
        ai, bi = a[f][y0:y1, x0:x1], b[f][y0:y1, x0:x1]
        dubbed += int(np.any(ai != bi))
        sharp_in.append(_laplacian_var(ai))
        sharp_out.append(_laplacian_var(bi))
        if n and frames[n - 1] == f - 1:
            flick_in.append(float(np.abs(ai - a[f - 1][y0:y1, x0:x1]).mean()))
            flick_out.append(float(np.abs(bi - b[f - 1][y0:y1, x0:x1]).mean()))
    outside = 0
    for f in range(min(len(a), len(b))):
        changed = a[f] != b[f]
        if not changed.any():
            continue
        allowed = np.zeros_like(changed)
        for tid in tracks.speakers_at(f):
            bank = banks.get(tid)
            row = None if bank is None else bank.row(f)
            box = tracks.track(tid).box_at(f)
            if row is None or box is None:
                continue
            nose = int(bank.points[row][1, 1])
            bx0, _, bx1, by1 = (int(round(v)) for v in box)
            pad = int(0.25 * (bx1 - bx0))
            allowed[nose:by1 + pad, max(bx0 - pad, 0):bx1 + pad] = True
        outside += int((changed & ~allowed).sum())
    return {
        "frames with the speaker": len(frames),
        "frames dubbed": dubbed,
        "sharpness ratio": float(np.mean(sharp_out) / max(np.mean(sharp_in), 1e-9)),
        "flicker ratio": float(np.mean(flick_out) / max(np.mean(flick_in), 1e-9))
        if flick_in else float("nan"),
        "changed outside the lower face": outside,
        "_frames": frames, "_boxes": boxes,
    }


def montage(clip: str, out: Path, frames: list[int], boxes: list, path: str) -> None:
    """input | output crops around the mouth of the most open and most shut dubbed frames."""
    import av
    import cv2

    from dubber.media.decode import to_rgb

    def rgb(p):
        with av.open(str(p)) as c:
            return [to_rgb(f) for f in c.decode(video=0)]

    a, b = rgb(clip), rgb(out)
    edge = min(5, max(len(frames) // 8, 0))  # past the fade in and out of the new mouth
    pick = np.linspace(edge, len(frames) - 1 - edge, 4).round().astype(int)
    rows = []
    for k in pick:
        f, (x0, y0, x1, y1) = frames[k], boxes[k]
        s = int(1.6 * max(x1 - x0, y1 - y0))
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        ys, xs = max(cy - s // 2, 0), max(cx - s // 2, 0)
        pair = np.concatenate([a[f][ys:ys + s, xs:xs + s], b[f][ys:ys + s, xs:xs + s]], 1)
        pair = cv2.resize(pair, (640, 320), interpolation=cv2.INTER_AREA)
        cv2.putText(pair, f"frame {f}: input | output", (6, 16), 0, 0.45, (255, 255, 0), 1)
        rows.append(pair)
    cv2.imwrite(path, cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    ap = clip_parser("quality", __doc__)
    ap.add_argument("--montage", default=None, help="write input | output crops to this PNG")
    add_json_flag(ap)
    a = ap.parse_args(argv)
    from dubber.config import load_config
    from dubber.pipeline import dub_video

    report = Report("quality", a.json)
    cfg = load_config(a.preset)
    report.info("clip", a.clip)
    report.info("dub", a.audio)
    report.info("renderer", cfg.mouth.renderer)
    with tempfile.TemporaryDirectory(prefix="dub-quality-") as tmp:
        out = Path(tmp) / "out.mkv"
        # The renderer alone: lossless, and without the watermark (which adds an invisible
        # change over the whole face; `bench watermark` and verify-watermark measure it).
        run = replace(cfg, encode=replace(cfg.encode, codec="ffv1"),
                      watermark=replace(cfg.watermark, enabled=False))
        dub_video(a.clip, a.audio, out, run, weights_dir=a.weights)
        res = measure(a.clip, a.audio, out, cfg, tmp)
        targets = {"sharpness ratio": ">= 0.9", "flicker ratio": "<= 1.3",
                   "changed outside the lower face": "0"}
        for k, v in res.items():
            if not k.startswith("_"):
                report.figure(k, v, "px" if k.startswith("changed") else "", targets.get(k))
        _sync_figures(a.clip, a.audio, out, report, weights=a.weights)
        if a.montage:
            montage(a.clip, out, res["_frames"], res["_boxes"], a.montage)
            report.info("montage", a.montage)
    report.close()
    return 0


def _sync_figures(clip: str, dub: str, out: Path, report: Report, weights=None) -> None:
    """The sync model's verdict on the output and on the input, against the dub."""
    try:
        from dubber.sync.check import check_sync
    except ImportError:
        report.info("sync check", "not available (no sync model in this build)")
        return
    for name, video in (("output", out), ("input", clip)):
        r = check_sync(video, dub, weights_dir=weights)
        report.figure(f"sync of the {name} with the dub", r.verdict)
        report.figure(f"share of speech frames in sync, {name}", r.share_in_sync)
