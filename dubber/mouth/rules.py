"""Timing rules from speech production: phones and voice activity -> a viseme timeline.

Our rules (after reading Rhubarb Lip Sync's, ``animationRules.cpp``, ``roughAnimation.cpp``,
``pauseAnimation.cpp``, ``timingOptimization.cpp``; no code taken):

1. **Shapes.** Each phone has a shape in Rhubarb's set (:data:`dubber.mouth.track.VISEMES`):
   open vowels C/D, rounded E/F, spread and most consonants B, F/V G, a long L H, silence X.
   Diphthongs change shape 60 % of the way through (EY C->B, AY D->B, OW E->F, AW D->E,
   OY E->B). A consonant that may take several shapes (T before OO is rounded, after EE
   spread) takes the one of the vowel it leads into, else of the one it follows.
2. **Bilabials close the lips.** M is closed (A) throughout. P and B are closed *before*
   their burst for half the preceding phone, at least 40 and at most 120 ms, and stay
   closed into the burst for up to 30 ms; the rest of the P/B shows the next sound.
3. **Vowels are anticipated.** A vowel's shape starts up to 60 ms early, over at most half
   of a preceding consonant that does not fix the lips itself (not A, not G).
4. **Pauses.** A pause shorter than ``HOLD`` (100 ms) keeps the shape before it; a longer
   one relaxes it (D/E -> C, C/F/H -> B). Silence (a pause in the voice activity, not a
   gap between words) shuts the mouth (X) from ``CLOSE_AFTER`` (150 ms) into it: a silent
   pause (no sound: the dub's digital silence or a quiet stem) of ``SHUT_SILENCE``
   (350 ms, Rhubarb's relax limit) or more, a pause with sound in it (breath, room tone)
   of ``SHUT_PAUSE`` (1 s) or more: silence closes the mouth within 150 ms. So does a
   stretch of no sound of ``SHUT_SILENCE`` or more inside a pause with sound in the rest
   of it (a line's digital silence and the breath after it). (A P/B/M the recogniser hears
   wholly inside such a silence is noise and gets no closure.) A pause that starts the
   audio has no shape before it: if too short to shut, it shows the relaxed shape of the
   speech it leads into (the audio starts in the middle of a scene; closed lips, a P/B/M
   to come, relax to the shut mouth); if long enough, it is shut from its start.
5. **No flutter.** No shape lasts less than ``MIN_SHAPE`` (60 ms): a shorter one is merged
   into the neighbour it resembles (a closure A is lengthened instead, so every P/B/M
   still closes the lips).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dubber.mouth.phones import BILABIALS, VOWELS, Phone
from dubber.mouth.track import VISEMES

MIN_SHAPE = 0.06  # s
HOLD = 0.10  # s: shorter pauses keep the shape
CLOSE_AFTER = 0.15  # s: the mouth is shut this long into a silence
SHUT_SILENCE = 0.35  # s: a silent pause at least this long shuts (Rhubarb's relax limit)
SHUT_PAUSE = 1.0  # s: a pause with sound in it at least this long shuts. Shorter, the
# mouth relaxes and the regressor says how open it stays: talkers breathe through open
# lips. Chosen by leave-one-video-out on the corpus (full track, opening r, 2026-11-30, no
# pause told silent): 0.35 s 0.374, 0.8 s 0.392, 1 s 0.400, 1.5 s 0.399, 2 s 0.398, never
# 0.394; with silent pauses told apart (the driver's QUIET_DB) 0.390
ANTICIPATE = 0.06  # s
SHUT_CLOSURE = 0.04  # s of a closure shown shut (sample)
CLOSURE_MIN, CLOSURE_MAX, BURST_CLOSED = 0.04, 0.12, 0.03  # s
DIPHTHONG_SPLIT = 0.6
LONG_VOWEL = 0.20  # s: AH and the open diphthongs open wider (D) from this length

# Shape options per phone: the first is the default (Rhubarb's sets, our order).
_SHAPES: dict[str, str] = {
    "AA": "D", "AE": "C", "EH": "C", "IY": "B", "IH": "B", "UW": "F", "UH": "F", "W": "F",
    "AO": "E", "ER": "E", "AH": "C", "M": "A", "P": "A", "B": "A", "F": "G", "V": "G",
    "T": "BF", "D": "BF", "K": "BCEF", "G": "BCEF", "CH": "BF", "JH": "BF", "SH": "BF",
    "ZH": "BF", "TH": "BF", "DH": "BF", "S": "BF", "Z": "BF", "N": "BCF", "NG": "BCF",
    "L": "BCF", "R": "BEF", "Y": "B", "HH": "BCDEF", "SIL": "X",
}
_DIPHTHONGS = {"EY": "CB", "AY": "DB", "OW": "EF", "AW": "DE", "OY": "EB"}
_RELAX = {"D": "C", "E": "C", "C": "B", "F": "B", "H": "B"}
# How alike two shapes are, for merging a too-short one: the mouth's opening order.
_OPENNESS = {"A": 0, "X": 0, "G": 1, "B": 1, "F": 2, "H": 2, "E": 3, "C": 3, "D": 4}


@dataclass
class Shape:
    """One viseme over ``start .. end`` seconds."""

    viseme: str
    start: float
    end: float
    closure: bool = False  # an A that closes the lips for a P/B/M (never removed)
    relaxed: bool = False  # a pause's relaxed shape, before the mouth shuts

    @property
    def length(self) -> float:
        return self.end - self.start


def _vowel_shape(p: Phone, first: bool) -> str:
    if p.phone in _DIPHTHONGS:
        a, b = _DIPHTHONGS[p.phone]
        if a == "D" and p.end - p.start < LONG_VOWEL:
            a = "C"
        return a if first else b
    if p.phone == "AH" and p.end - p.start >= LONG_VOWEL:
        return "D"
    return _SHAPES[p.phone][0]


def _choose(options: str, before: str | None, after: str | None) -> str:
    for s in (after, before):
        if s and s in options:
            return s
    return options[0]


def phone_shapes(phones: list[Phone]) -> list[Shape]:
    """Rule 1 and 2: a shape per phone (two per diphthong) plus the bilabial closures."""
    out: list[Shape] = []
    for i, p in enumerate(phones):
        if p.phone in _DIPHTHONGS:
            cut = p.start + DIPHTHONG_SPLIT * (p.end - p.start)
            out.append(Shape(_vowel_shape(p, True), p.start, cut))
            out.append(Shape(_vowel_shape(p, False), cut, p.end))
            continue
        if p.phone in VOWELS or len(_SHAPES[p.phone]) == 1:
            shape = _vowel_shape(p, True) if p.phone in VOWELS else _SHAPES[p.phone]
            if p.phone in ("P", "B"):
                shape = "A"
            out.append(Shape(shape, p.start, p.end, closure=p.phone in BILABIALS))
            continue
        nxt = next((q for q in phones[i + 1:] if q.phone in VOWELS or q.phone == "SIL"), None)
        prv = next((q for q in reversed(phones[:i]) if q.phone in VOWELS), None)
        after = _vowel_shape(nxt, True) if nxt is not None and nxt.phone != "SIL" else None
        before = _vowel_shape(prv, False) if prv is not None else None
        opts = _SHAPES[p.phone]
        if p.phone == "L" and p.end - p.start >= LONG_VOWEL:
            opts = "H"
        out.append(Shape(_choose(opts, before, after), p.start, p.end))
    # P/B: closed before the burst (taken from the phone before), open into the next sound.
    for k, s in enumerate(out):
        ph = _phone_at(phones, s)
        if not (s.closure and ph in ("P", "B")):
            continue
        prev = out[k - 1] if k > 0 else None
        lead = np.clip((prev.length if prev else 0.0) / 2, CLOSURE_MIN, CLOSURE_MAX)
        if prev is not None:
            lead = min(lead, max(prev.length - 0.02, 0.0)) if not prev.closure else 0.0
            prev.end -= lead
        closed_end = min(s.end, s.start + BURST_CLOSED)
        follow = out[k + 1].viseme if k + 1 < len(out) and out[k + 1].viseme != "X" else "B"
        tail = Shape(follow, closed_end, s.end)
        s.start -= lead
        s.end = closed_end
        if tail.length > 0:
            out.insert(k + 1, tail)
    return [s for s in out if s.length > 1e-6]


def _phone_at(phones: list[Phone], s: Shape) -> str:
    mid = (s.start + s.end) / 2
    for p in phones:
        if p.start <= mid < p.end:
            return p.phone
    return "SIL"


def anticipate(shapes: list[Shape]) -> list[Shape]:
    """Rule 3: each vowel-like shape starts early over the consonant before it."""
    for k in range(1, len(shapes)):
        cur, prev = shapes[k], shapes[k - 1]
        if (cur.viseme in "CDE" and not cur.relaxed and prev.viseme not in "AGX"
                and not prev.closure):
            shift = min(ANTICIPATE, prev.length / 2)
            prev.end -= shift
            cur.start -= shift
    return [s for s in shapes if s.length > 1e-6]


def apply_pauses(shapes: list[Shape], silent: list[tuple[float, float]],
                 quiet: list[bool] | None = None,
                 hushed: list[tuple[float, float]] = ()) -> list[Shape]:
    """Rule 4 over pauses: silent intervals (from the phones and the voice activity);
    ``quiet[k]``: pause k has no sound in it (default: every pause has some); ``hushed``:
    (start, end) seconds without sound, each shut from ``CLOSE_AFTER`` into it when it
    lasts ``SHUT_SILENCE`` or more, whatever the rest of its pause holds."""
    out = list(shapes)
    quiet = list(quiet) if quiet is not None else [False] * len(silent)
    for (a, b), no_sound in zip(silent, quiet):
        if b - a < HOLD:
            continue
        limit = SHUT_SILENCE if no_sound else SHUT_PAUSE
        before = _shape_at(out, a - 1e-3)
        if before is None:  # the audio starts with this pause: nothing to close from
            after = _shape_at(out, b + 1e-3) if b - a < limit else None
            relaxed = "X" if after is None else _RELAX.get(after.viseme, after.viseme)
            relaxed = "X" if relaxed == "A" else relaxed  # closed lips: the mouth shut
            shut = b if relaxed != "X" else a
        else:
            relaxed = before.viseme if before.relaxed else _RELAX.get(before.viseme,
                                                                      before.viseme)
            relaxed = "X" if relaxed == "A" else relaxed
            shut = min(a + CLOSE_AFTER, b) if b - a >= limit else b
        if shut < b:
            out = _shut(out, a, b)
        if shut > a + MIN_SHAPE and relaxed != "X":
            out = _paint(out, Shape(relaxed, a, shut, relaxed=True))
    for a, b in hushed:
        start = a if a <= 0 else a + CLOSE_AFTER
        if b - a >= SHUT_SILENCE - 1e-9 and b > start:
            out = _shut(out, start, b)
    return out


def _shut(shapes: list[Shape], a: float, b: float) -> list[Shape]:
    """The mouth shut (X) over ``a .. b``. A P/B/M heard wholly inside is noise, not
    speech: no closure for it."""
    out = [s for s in shapes if not (s.closure and s.start >= a and s.end <= b)]
    return _paint(out, Shape("X", a, b))


def _shape_at(shapes: list[Shape], t: float) -> Shape | None:
    for s in shapes:
        if s.start <= t < s.end:
            return s
    return None


def _paint(shapes: list[Shape], new: Shape) -> list[Shape]:
    """``new`` laid over ``shapes`` (what it covers is cut away); closures are kept."""
    out = []
    for s in shapes:
        if s.end <= new.start or s.start >= new.end or s.closure:
            out.append(s)
            continue
        if s.start < new.start:
            out.append(Shape(s.viseme, s.start, new.start, s.closure, s.relaxed))
        if s.end > new.end:
            out.append(Shape(s.viseme, new.end, s.end, s.closure, s.relaxed))
    pieces = [new]
    for s in out:  # closures split the new shape
        if s.closure and s.start < new.end and s.end > new.start:
            pieces = [q for p in pieces for q in _cut(p, s)]
    out.extend(pieces)
    return sorted((s for s in out if s.length > 1e-6), key=lambda s: s.start)


def _cut(p: Shape, hole: Shape) -> list[Shape]:
    parts = []
    if hole.start > p.start:
        parts.append(Shape(p.viseme, p.start, min(hole.start, p.end), relaxed=p.relaxed))
    if hole.end < p.end:
        parts.append(Shape(p.viseme, max(hole.end, p.start), p.end, relaxed=p.relaxed))
    return parts


def merge_short(shapes: list[Shape]) -> list[Shape]:
    """Rule 5: no shape shorter than MIN_SHAPE; closures are lengthened instead."""
    out = [Shape(s.viseme, s.start, s.end, s.closure, s.relaxed) for s in shapes]
    changed = True
    while changed and len(out) > 1:
        changed = False
        for k, s in enumerate(out):
            if s.length >= MIN_SHAPE - 1e-9:
                continue
            if s.closure:
                need = MIN_SHAPE - s.length
                for j in (k - 1, k + 1):
                    if 0 <= j < len(out) and not out[j].closure and need > 0:
                        take = min(need, max(out[j].length - MIN_SHAPE, 0.0))
                        if j < k:
                            out[j].end -= take
                            s.start -= take
                        else:
                            out[j].start += take
                            s.end += take
                        need -= take
                if need > 1e-9:
                    continue  # squeezed between closures: leave it, it is closed anyway
                changed = True
                break
            nbrs = [j for j in (k - 1, k + 1) if 0 <= j < len(out)]
            j = min(nbrs, key=lambda j: (abs(_OPENNESS[out[j].viseme] - _OPENNESS[s.viseme]),
                                         out[j].closure))
            if out[j].closure and not any(not out[i].closure for i in nbrs):
                continue
            if out[j].closure:
                j = next(i for i in nbrs if not out[i].closure)
            if j < k:
                out[j].end = s.end
            else:
                out[j].start = s.start
            del out[k]
            changed = True
            break
    # Adjacent equal shapes become one.
    merged: list[Shape] = []
    for s in out:
        if merged and (merged[-1].viseme, merged[-1].closure, merged[-1].relaxed) == (
                s.viseme, s.closure, s.relaxed):
            merged[-1].end = s.end
        else:
            merged.append(s)
    return merged


def timeline(phones: list[Phone], silent: list[tuple[float, float]],
             duration: float, quiet: list[bool] | None = None,
             hushed: list[tuple[float, float]] = ()) -> list[Shape]:
    """Every rule, in order: phones and pauses -> consecutive shapes over ``0 .. duration``.

    Args:
        phones: the recognised phones.
        silent: pauses as (start, end) seconds: where the voice activity says no speech
            (the recogniser's SIL inside speech only relaxes the mouth: it also calls
            breaths and stop closures silence).
        duration: the audio's length in seconds.
        quiet: per pause, whether it has no sound in it (it then shuts from
            ``SHUT_SILENCE``, not ``SHUT_PAUSE``; default: every pause has some).
        hushed: stretches without sound as (start, end) seconds, wherever they lie in
            their pauses: each shuts the mouth from ``CLOSE_AFTER`` into it if it lasts
            ``SHUT_SILENCE`` or more.
    """
    shapes = phone_shapes(phones)
    for k, s in enumerate(shapes):  # rule 4 inside speech: hold short gaps, relax longer
        if s.viseme == "X" and k > 0:
            before = shapes[k - 1].viseme if not shapes[k - 1].closure else "B"
            s.viseme = before if s.length < HOLD else _RELAX.get(before, before)
            s.relaxed = s.length >= HOLD
    shapes = anticipate(shapes)
    if not shapes or shapes[0].start > 0:
        shapes.insert(0, Shape("X", 0.0, shapes[0].start if shapes else duration))
    if shapes[-1].end < duration:
        shapes.append(Shape("X", shapes[-1].end, duration))
    shapes = apply_pauses(shapes, silent, quiet, hushed)
    return merge_short(shapes)


def sample(shapes: list[Shape], times: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The viseme shown at each frame time, whether it shows a bilabial closure shut, and
    whether it is a pause's relaxed shape.

    A closure (an A shape) is shown shut on the frames in its first ``SHUT_CLOSURE``
    seconds, where the lips meet (one frame at 25 fps); where no frame falls there, on the
    frame nearest its middle, so that every closure is seen. Not on the whole closure: the
    regressor, fitted on real lips, knows how far apart they are around a P/B/M, and the
    recogniser's phones are approximate. On the training videos (each by a driver fitted
    without it, offsets removed; opening r of the whole track) every frame of the closures
    shut gave 0.648; one frame each 0.668 (the middle), 0.676 (the first), 0.677 (the one
    the regressor has least open); the first 40 ms (shipped: like the first frame, but
    each frame's entry depends on its own time only) 0.675; none at all 0.687, which the
    issue's "every P/B/M closes the lips" forbids. The driver shows the rest of a closure
    as a consonant (B).

    Returns:
        (viseme indices, shape = (N,) uint8 into VISEMES; shut-closure flags and relaxed
        flags, each shape = (N,) bool).
    """
    times = np.asarray(times, np.float64)
    vis = np.full(len(times), VISEMES.index("X"), np.uint8)
    closed = np.zeros(len(times), bool)
    relaxed = np.zeros(len(times), bool)
    if not len(times) or not shapes:
        return vis, closed, relaxed
    starts = np.array([s.start for s in shapes])
    k = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(shapes) - 1)
    for i, j in enumerate(k):
        s = shapes[j]
        if s.start <= times[i] < s.end:
            vis[i] = VISEMES.index(s.viseme)
            relaxed[i] = s.relaxed
    first, last = times.min(), times.max()
    for s in shapes:
        if not (s.closure or s.viseme == "A"):
            continue
        a, b = s.start, min(s.end, s.start + SHUT_CLOSURE)
        if b < first or a > last:
            continue
        meet = (times >= a) & (times < b)
        if not meet.any():
            meet[int(np.argmin(np.abs(times - (a + b) / 2)))] = True
        vis[meet] = VISEMES.index("A")
        closed |= meet
        relaxed[meet] = False
    return vis, closed, relaxed
