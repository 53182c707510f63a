"""``dub check-sync --sheet OUT.png``: the report as a chart.

Top: each segment's offset of the audio behind the lips (ms), coloured by verdict, with the
in-sync band. Bottom: each segment's confidence against the threshold.
"""

from __future__ import annotations

import os
from pathlib import Path

from dubber.errors import OutputError
from dubber.sync.check import SyncReport
from dubber.sync.features import RATE

_COLOURS = {"in sync": "tab:green", "out of sync": "tab:red", "no speech": "silver",
            "no face": "tab:orange"}


def sync_sheet(report: SyncReport, out: str | Path) -> Path:
    """Write the chart PNG atomically; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dubber.files import temp_beside

    out = Path(out)
    fps = report.frame_rate
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
    band = 1000 * (report.settings.max_offset + 0.5) / RATE
    ax1.axhspan(-band, band, color="tab:green", alpha=0.1)
    for s in report.segments:
        t0, t1 = s.start / fps, (s.end + 1) / fps
        c = _COLOURS[s.verdict]
        ax1.axvline(t0, color="k", lw=0.4, ls=":")
        if s.offset_ms is None:
            ax1.text((t0 + t1) / 2, 0, s.verdict, ha="center", va="center", fontsize=8, color=c)
            continue
        ax1.plot([t0, t1], [s.offset_ms] * 2, color=c, lw=4)
        ax1.text((t0 + t1) / 2, s.offset_ms, f"#{s.track}", ha="center", va="bottom",
                 fontsize=8)
        ax2.plot([t0, t1], [s.confidence] * 2, color=c, lw=4)
    ax2.axhline(report.settings.min_confidence, color="k", lw=0.8, ls="--")
    ax1.set_ylabel("audio lag (ms)")
    ax1.set_ylim(-650, 650)
    ax2.set_ylabel("confidence")
    ax2.set_xlabel("seconds")
    ax1.set_xlim(0, report.frames / fps)
    ax1.set_title(f"{Path(report.video).name} against {Path(report.audio).name}: "
                  f"{report.line()}", fontsize=9)
    fig.tight_layout()
    try:
        tmp = temp_beside(out, ".png")
    except OSError as exc:
        plt.close(fig)
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None
    try:
        fig.savefig(tmp, dpi=80, format="png")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return out
