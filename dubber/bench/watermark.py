"""How much the watermark costs: ours against invisible-watermark, and per 4K frame.

    python -m dubber.bench watermark [--repeats N] [--json [FILE]]

Figures, one per line (``name: value unit``), all measured in this run:

- ``crop embed/decode`` (ms per 768x768 BGR crop): invisible-watermark's ``dwtDctSvd``
  (``WatermarkEncoder.encode`` / ``WatermarkDecoder.decode``, 64 bits, its default scale)
  against ours (:func:`dubber.watermark.encode_bgr` / ``decode_bgr``), same crop, same
  bits; the ratio; and ours per crop when 8 crops go through in one batch.
- ``face embed`` (ms per face): what the render's watermark stage adds per face, a 768 px
  face square in a 3840x2160 luma plane (two embedding passes, canonical 128x128 square).
- ``face decode`` (ms per face): what ``dub verify-watermark`` spends reading one face
  (the alignment search plus the exact reading), detection not included.
- ``4K dub added`` (s per hour of 24 fps film with one re-rendered face on every frame).

The crop is a real frame of ``../shared/media`` when present, else a generated one.
Each figure is the median of ``--repeats`` runs (the CPU may be shared).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dubber.bench.report import Report, add_json_flag

from dubber import watermark as wm

_CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "clips" / "kim_1080p30_en.mp4"


def _crop() -> np.ndarray:
    """A 768x768 BGR crop: kim's face when the shared media is there, else a smooth
    generated picture with texture."""
    if _CLIP.is_file():
        import av

        with av.open(str(_CLIP)) as c:
            bgr = next(c.decode(video=0)).to_ndarray(format="bgr24")
        return np.ascontiguousarray(bgr[100:868, 600:1368])
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:768, 0:768] / 768.0
    base = 120 + 60 * np.sin(3 * xx + 2 * yy)[..., None] * np.array([1.0, 0.8, 0.6])
    return np.clip(base + rng.normal(0, 6, (768, 768, 3)), 0, 255).astype(np.uint8)


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


def run(repeats: int = 5) -> dict[str, float]:
    crop = _crop()
    bits = list(np.random.default_rng(1).integers(0, 2, 64))
    res: dict[str, float] = {}
    try:
        from imwatermark import WatermarkDecoder, WatermarkEncoder
    except ImportError:  # a test dependency: the reference figures need it
        WatermarkEncoder = None
    if WatermarkEncoder is not None:
        enc = WatermarkEncoder()
        enc.set_by_bits(bits)
        dec = WatermarkDecoder("bits", 64)
        res["crop embed invisible-watermark"] = _median_ms(
            lambda: enc.encode(crop, "dwtDctSvd"), max(2, repeats // 2))
        res["crop decode invisible-watermark"] = _median_ms(
            lambda: dec.decode(crop, "dwtDctSvd"), max(2, repeats // 2))
    res["crop embed ours"] = _median_ms(lambda: wm.encode_bgr(crop, bits), repeats)
    res["crop decode ours"] = _median_ms(lambda: wm.decode_bgr(crop, 64), repeats)
    batch = np.stack([crop] * 8)
    res["crop embed ours, batch of 8"] = _median_ms(lambda: wm.encode_bgr(batch, bits),
                                                    repeats) / 8
    res["crop decode ours, batch of 8"] = _median_ms(lambda: wm.decode_bgr(batch, 64),
                                                     repeats) / 8
    if WatermarkEncoder is not None:
        res["crop embed speed-up"] = res["crop embed invisible-watermark"] / res["crop embed ours"]
        res["crop decode speed-up"] = (res["crop decode invisible-watermark"]
                                       / res["crop decode ours"])
    # A 4K frame with one 768 px face square: the stage's work per face, and verify's.
    luma = np.full((2160, 3840), 16, np.uint8)
    gray = (0.114 * crop[..., 0] + 0.587 * crop[..., 1] + 0.299 * crop[..., 2]).astype(np.uint8)
    luma[700:1468, 1500:2268] = gray
    box = (1500.0, 700.0, 2268.0, 1468.0)
    code = wm.codeword("d0bbe125")
    sq = wm.FaceSquare.from_box(box)
    strength = 64.0
    res["face embed (768 px face in 4K)"] = _median_ms(
        lambda: wm.embed_faces([luma.copy()], [sq], code, strength), repeats)
    res["face decode (768 px face in 4K)"] = _median_ms(
        lambda: wm.decode_face(luma, box, code, strength), repeats)
    res["4K dub added per hour of 24 fps film"] = (
        res["face embed (768 px face in 4K)"] / 1000 * 24 * 3600)
    return res


_UNITS = {"speed-up": "x", "per hour": "s"}


def _unit(name: str) -> str:
    return next((u for k, u in _UNITS.items() if k in name), "ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dubber.bench watermark",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    add_json_flag(ap)
    a = ap.parse_args(argv)
    report = Report("watermark", a.json)
    for k, v in run(a.repeats).items():
        report.figure(k, v, _unit(k))
    report.close()
    return 0
