"""A mouth track as text: TSV for spreadsheets and animation tools, JSON for programs.

TSV: a header line, then one line per frame::

    frame  time      viseme  opening  width   rounding  speech  confidence
    0      0.000000  X       0.0007   0.5599  0.3301    0       0.998

JSON (``"schema": "dubber.mouth-track/1"``): ``visemes`` (the letters' meanings), ``params``
(the units), and ``frames``, a list of objects with the TSV's columns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from dubber.errors import OutputError, UsageError
from dubber.files import check_replaceable, same_file, temp_beside
from dubber.mouth.track import MouthTrack

SCHEMA = "dubber.mouth-track/1"
COLUMNS = ("frame", "time", "viseme", "opening", "width", "rounding", "speech", "confidence")
VISEME_MEANINGS = {
    "A": "closed (M, B, P)", "B": "slightly open, teeth together (most consonants, EE)",
    "C": "open (EH, AE)", "D": "wide open (AA)", "E": "slightly rounded (AO, ER)",
    "F": "puckered (UW, OW, W)", "G": "upper teeth on lower lip (F, V)",
    "H": "tongue raised (long L)", "X": "at rest (silence)",
}
UNITS = ("opening, width and rounding are ratios to the distance between the outer eye "
         "corners (dubber.mouth.params); opening about 0 shut, 0.3-0.5 wide open")


def rows(track: MouthTrack) -> list[dict]:
    """One dict per frame with :data:`COLUMNS`."""
    labels = track.labels()
    return [{"frame": i, "time": round(float(track.times[i]), 6), "viseme": labels[i],
             "opening": round(float(track.params[i, 0]), 4),
             "width": round(float(track.params[i, 1]), 4),
             "rounding": round(float(track.params[i, 2]), 4),
             "speech": bool(track.speech[i]),
             "confidence": round(float(track.confidence[i]), 3)} for i in range(len(track))]


def write_track(track: MouthTrack, out: IO[str], fmt: str = "tsv", source: str = "") -> None:
    """Write ``track`` as ``fmt`` (``tsv`` or ``json``) to an open text stream."""
    if fmt == "json":
        json.dump({"schema": SCHEMA, "audio": source, "visemes": VISEME_MEANINGS,
                   "params": UNITS, "frames": rows(track)}, out, indent=1)
        out.write("\n")
        return
    if fmt != "tsv":
        raise ValueError(f"unknown format {fmt!r}")
    out.write("\t".join(COLUMNS) + "\n")
    for r in rows(track):
        out.write(f"{r['frame']}\t{r['time']:.6f}\t{r['viseme']}\t{r['opening']:.4f}\t"
                  f"{r['width']:.4f}\t{r['rounding']:.4f}\t{int(r['speech'])}\t"
                  f"{r['confidence']:.3f}\n")


def check_track_output(path: str | os.PathLike, inputs: tuple, force: bool = False) -> None:
    """Refuse, before any work, an output that is one of ``inputs`` (the same file by any
    name: a link, ``..``), a folder, or an existing file without ``force``.

    Raises UsageError / OutputError.
    """
    path = Path(path)
    for given in inputs:
        if given is not None and same_file(path, given):
            raise UsageError(f"the output {path} is the input {given}: choose another name "
                             "with -o")
    check_replaceable(path, force)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: the folder {path.parent} does not exist")


def save_track(track: MouthTrack, path: str | os.PathLike, fmt: str = "tsv",
               source: str = "") -> None:
    """Write ``track`` to ``path`` all or nothing (temporary file beside it, renamed)."""
    path = Path(path)
    try:
        tmp = temp_beside(path, "." + fmt)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with open(tmp, "w") as f:
            write_track(track, f, fmt, source)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
