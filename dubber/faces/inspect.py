"""``dub inspect``: the analysis as a terminal table and as a contact sheet PNG.

The contact sheet shows sample frames (the middle of every shot and of every speaking
window, up to ``max_frames``) with each track's box and id -- the selected speaker in
green with a ``speaking`` mark, other faces in grey -- and, per track, a plot of its lip
aperture and its sync score with the original audio (the sync model's confidence at offset
~0, :mod:`dubber.sync.speaker`; the speech envelope with ``faces.speaker_cue: envelope``),
speaking windows shaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dubber.faces.tracks_file import Tracks

log = logging.getLogger(__name__)

SHEET_THUMB_WIDTH = 480
SHEET_COLUMNS = 4


def format_table(tracks: Tracks) -> str:
    """Shots and tracks as aligned text tables."""
    fps = float(tracks.frame_rate)
    lines = [f"{tracks.width}x{tracks.height}, {tracks.frame_count} frames at {tracks.frame_rate}"
             f" fps, {len(tracks.shots)} shots, {len(tracks.tracks)} tracks"
             + ("" if tracks.has_audio else " (no original audio: largest face selected)"), ""]
    lines.append(f"{'shot':>4}  {'frames':>13}  {'seconds':>15}  {'speaker':>7}  speaking windows")
    for k, s in enumerate(tracks.shots):
        sel = "-" if s.selected_track is None else str(s.selected_track)
        wins = ", ".join(f"{w.start}-{w.end}:#{w.track}" for w in s.windows) or "-"
        lines.append(f"{k:>4}  {s.start:>6}-{s.end:<6}  {s.start / fps:>7.2f}-{(s.end + 1) / fps:<7.2f}"
                     f"  {sel:>7}  {wins}")
    lines.append("")
    lines.append(f"{'track':>5}  {'frames':>13}  {'size px':>7}  {'detected':>8}  {'selected':>8}")
    for t in tracks.tracks:
        spk = sum(t.id in tracks.speakers_at(f) for f in range(t.first, t.last + 1))
        lines.append(f"{t.id:>5}  {t.first:>6}-{t.last:<6}  {t.size:>7.0f}  "
                     f"{(t.scores > 0).mean():>8.0%}  {spk / len(t):>8.0%}")
    return "\n".join(lines)


def sample_frames(tracks: Tracks, max_frames: int = 16) -> list[int]:
    """Frames worth showing: the middle of each shot and of each speaking window, then
    evenly spaced frames up to ``max_frames``."""
    picks = set()
    for s in tracks.shots:
        picks.add((s.start + s.end) // 2)
        for w in s.windows:
            picks.add((w.start + w.end) // 2)
    picks = sorted(picks)
    if len(picks) > max_frames:
        picks = [picks[i] for i in np.linspace(0, len(picks) - 1, max_frames).round().astype(int)]
    spare = max_frames - len(picks)
    if spare > 0:
        even = np.linspace(0, tracks.frame_count - 1, spare + 2)[1:-1].round().astype(int)
        picks = sorted(set(picks) | set(even.tolist()))
    return picks


def contact_sheet(video: str | Path, tracks: Tracks, out: str | Path,
                  audio=None, max_frames: int = 12) -> Path:
    """Write the contact sheet PNG.

    Args:
        video: the analysed video (frames are decoded at a reduced size).
        tracks: its analysis.
        out: PNG path.
        audio: the original audio at 16 kHz: float32 mono array or AudioTrack (None: no
            envelope plotted).
        max_frames: most sample frames shown.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dubber.faces.speaker import speech_envelope
    from dubber.media.decode import read_chunks
    from dubber.media.probe import probe

    info = probe(video)
    picks = sample_frames(tracks, max_frames)
    scale = min(1.0, SHEET_THUMB_WIDTH / info.width)
    thumbs: dict[int, np.ndarray] = {}
    for chunk in read_chunks(info, 32, scale, full=False):
        for i, idx in enumerate(chunk.frame_indices.tolist()):
            if idx in picks:
                thumbs[idx] = chunk.analysis[i]
        if len(thumbs) == len(picks):
            break
    rows = -(-len(picks) // SHEET_COLUMNS)
    n_tracks = len(tracks.tracks)
    h_img = 2.2 * rows
    fig = plt.figure(figsize=(16, h_img + 1.8 * max(n_tracks, 1) + 0.5))
    grid = fig.add_gridspec(rows + max(n_tracks, 1), SHEET_COLUMNS,
                            height_ratios=[2.2] * rows + [1.8] * max(n_tracks, 1))
    for k, idx in enumerate(picks):
        ax = fig.add_subplot(grid[k // SHEET_COLUMNS, k % SHEET_COLUMNS])
        ax.imshow(thumbs.get(idx, np.zeros((8, 8, 3), np.uint8)))
        speakers = tracks.speakers_at(idx)
        for tid in tracks.faces_at(idx):
            x0, y0, x1, y1 = (v * scale for v in tracks.track(tid).box_at(idx))
            on = tid in speakers
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                       lw=2.5 if on else 1.2, color="lime" if on else "silver"))
            ax.text(x0, y0 - 3, f"#{tid}" + (" speaking" if on else ""), fontsize=8,
                    color="lime" if on else "white", backgroundcolor="black")
        shot = next(k for k, s in enumerate(tracks.shots) if s.start <= idx <= s.end)
        ax.set_title(f"frame {idx}  shot {shot}", fontsize=8)
        ax.axis("off")
    fps = float(tracks.frame_rate)
    env = None
    sync_cue = tracks.settings.get("speaker_cue", "envelope") == "sync"
    if audio is not None and not sync_cue:
        env = speech_envelope(audio, 16000, np.arange(tracks.frame_count) / fps)
    for j, t in enumerate(tracks.tracks):
        ax = fig.add_subplot(grid[rows + j, :])
        f = np.arange(t.first, t.last + 1)
        ax.plot(f / fps, t.aperture, color="tab:red", lw=1, label=f"track #{t.id} lip aperture")
        ax.set_ylabel("aperture", fontsize=8)
        if sync_cue and tracks.has_audio:
            ax2 = ax.twinx()
            ax2.plot(f / fps, t.speaking, color="tab:blue", lw=1.2, label="sync score")
            thr = tracks.settings.get("speaker_min_sync")
            if thr is not None:
                ax2.axhline(thr, color="tab:blue", lw=0.6, ls="--")
            ax2.set_ylabel("sync", fontsize=8)
            ax2.set_ylim(bottom=0)
        elif env is not None:
            ax2 = ax.twinx()
            ax2.plot(f / fps, env[t.first: t.last + 1], color="tab:blue", lw=0.8, alpha=0.7,
                     label="speech envelope (dB)")
            ax2.set_ylabel("dB", fontsize=8)
        for s in tracks.shots:
            ax.axvline(s.start / fps, color="k", lw=0.5, ls=":")
            for w in s.windows:
                if w.track == t.id:
                    ax.axvspan(w.start / fps, (w.end + 1) / fps, color="lime", alpha=0.2)
        ax.set_xlim(0, tracks.frame_count / fps)
        cue = ("sync score with the original audio (blue; dashed: threshold)" if sync_cue
               else "original speech envelope (blue)")
        ax.set_title(f"track #{t.id}: lip aperture (red) vs {cue}; green = speaking windows",
                     fontsize=9)
    if not tracks.tracks:
        ax = fig.add_subplot(grid[rows, :])
        ax.text(0.5, 0.5, "no face tracks", ha="center", va="center")
        ax.axis("off")
    fig.axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
