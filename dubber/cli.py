"""The ``dub`` command line. Thin: parse, call the library, print.

``dub INPUT --audio DUB [-o OUT]`` is the main command (``dub run`` spelled out); other
commands are subcommands. Every error the user can act on is one line
``dub: error: ...`` with exit code 2 (bad usage or input) or 1 (a failed run); nothing is
left behind and the input is never touched.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import click
from tqdm import tqdm

from dubber import __version__
from dubber.config import DEFAULT_PRESET, VIDEO_CODECS, load_config
from dubber.errors import DubberError, Interrupted

log = logging.getLogger("dubber")


class _DefaultGroup(click.Group):
    """A group whose first argument, when it is not a command, goes to ``run``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h",
                                                                       "--version"):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx, formatter):
        formatter.write_usage("dub", "INPUT --audio DUB [-o OUT] [OPTIONS]\n"
                                     "       dub COMMAND [ARGS]...")


class _TqdmHandler(logging.Handler):
    """Log lines as ``dub: warning: ...`` that do not tear the progress bar."""

    def emit(self, record):
        level = record.levelname.lower()
        tqdm.write(f"dub: {level}: {record.getMessage()}", file=sys.stderr)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO)[min(verbose, 1)]
    if verbose >= 2:
        level = logging.DEBUG
    root = logging.getLogger("dubber")
    root.handlers[:] = [_TqdmHandler()]
    root.setLevel(level)
    root.propagate = False


_verbosity = click.option("-v", "--verbose", count=True, help="More detail (-vv: debug).")
_quiet = click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bar.")
_face_option = click.option(
    "--face", metavar="WHO",
    help="Faces to re-render: speaker (default: whoever's lips follow the original audio), "
         "largest, all, or a track id from `dub inspect`.")
_tracks_option = click.option(
    "--tracks", "tracks_file", metavar="FILE", type=click.Path(dir_okay=False),
    help="Use this (edited) tracks file instead of analysing INPUT (`dub inspect --json`).")


class _AnalysisBar:
    """Progress of the analysis pass: called with the frames done so far; close() after."""

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet
        self._bar = None  # made on the first call: no bar when no analysis runs

    def __call__(self, done: int) -> None:
        if self._quiet:
            return
        if self._bar is None:
            self._bar = tqdm(unit="frame", desc="analysing faces", dynamic_ncols=True,
                             file=sys.stderr, leave=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _tracks(input_path, cfg, tracks_file, quiet):
    """The analysis (cached) or the edited tracks file, with a progress bar."""
    from dubber.faces.analyze import tracks_for_run

    bar = _AnalysisBar(quiet)
    try:
        return tracks_for_run(input_path, cfg, tracks_file, progress=bar)
    finally:
        bar.close()


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dub")
def cli() -> None:
    """Re-render the on-screen speaker's mouth to match a dubbed dialogue track.

    \b
    dub INPUT --audio DUB [-o OUT]    dub one title
    dub probe INPUT                   what dubber sees in a video
    dub inspect INPUT [--sheet S.png] shots, faces and speakers found in a video
    dub weights list|verify|describe  trained weights and the models of a preset
    """


@cli.command("run")
@click.argument("input_path", metavar="INPUT")
@click.option("-a", "--audio", "audio_path", required=True, metavar="DUB",
              help="The dubbed dialogue track (wav, flac, mp3, or any file with audio).")
@click.option("-o", "--output", metavar="OUT",
              help="Output file (.mp4, .mov, .mkv). Default: INPUT.dubbed.mp4 beside INPUT.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True,
              help="Named configuration from presets/, or a YAML file.")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: the preset's).")
@click.option("--passthrough", is_flag=True, default=None,
              help="Change no picture: re-encode it unchanged with the dub track muxed in.")
@click.option("--chunk-frames", type=click.IntRange(min=1),
              help="Frames decoded and processed together; bounds memory.")
@click.option("--codec", type=click.Choice(VIDEO_CODECS), help="Video codec of OUT.")
@click.option("--crf", type=click.IntRange(0, 51), help="x264/x265 quality (lower is better).")
@click.option("--speed", metavar="PRESET",
              help="x264/x265 speed preset (ultrafast ... veryslow).")
@click.option("--keep-original-audio", is_flag=True, default=None,
              help="Keep the input's audio as a second track labelled Original.")
@click.option("--dub-language", metavar="LANG", help="ISO 639-2 tag for the dub track (hin).")
@click.option("--strict-length", is_flag=True, default=None,
              help="Fail if the dub and the picture differ by more than one frame.")
@click.option("--weights", "weights_dir", metavar="DIR",
              help="Folder of trained weights (default: $DUBBER_WEIGHTS, else weights/).")
@_face_option
@_tracks_option
@_verbosity
@_quiet
def run_command(input_path, audio_path, output, force, preset, device, passthrough,
                chunk_frames, codec, crf, speed, keep_original_audio, dub_language,
                strict_length, weights_dir, face, tracks_file, verbose, quiet):
    """Dub INPUT with the DUB track: the whole picture is re-encoded, frame for frame."""
    from dubber.pipeline import dub_video

    _setup_logging(verbose, quiet)
    cfg = load_config(preset, {
        "media": {"chunk_frames": chunk_frames},
        "encode": {"codec": codec, "crf": crf, "speed": speed, "keep_original_audio": keep_original_audio,
                   "dub_language": dub_language, "strict_length": strict_length},
        "runtime": {"device": device, "passthrough": passthrough},
        "faces": {"face": face},
    })
    bar: list[tqdm] = []
    analysis = _AnalysisBar(quiet)

    def on_start(info):
        analysis.close()
        bar.append(tqdm(total=info.frame_count, unit="frame", desc=Path(input_path).name,
                        disable=quiet, dynamic_ncols=True, file=sys.stderr))

    try:
        result = dub_video(input_path, audio_path, output, cfg, weights_dir=weights_dir,
                           tracks_file=tracks_file, force=force,
                           progress=lambda n: bar[0].update(n), on_start=on_start,
                           analysis_progress=analysis)
    finally:
        analysis.close()
        if bar:
            bar[0].close()
    if not quiet:
        note = {"padded": ", dub padded with silence", "cut": ", dub cut to the picture",
                "none": ""}[result.audio_action]
        click.echo(f"wrote {result.output} ({result.frames} frames, "
                   f"{result.video_duration:.3f} s{note})")


@cli.command("inspect")
@click.argument("input_path", metavar="INPUT")
@click.option("--json", "as_json", is_flag=True, help="Print the tracks file (JSON) instead.")
@click.option("--sheet", metavar="OUT.png", type=click.Path(dir_okay=False),
              help="Write a contact sheet: sample frames with boxes, ids and speaker marks, "
                   "and lip aperture against the speech envelope per track.")
@click.option("--preset", default=DEFAULT_PRESET, show_default=True,
              help="Named configuration from presets/, or a YAML file.")
@_face_option
@_tracks_option
@_verbosity
@_quiet
def inspect_command(input_path, as_json, sheet, preset, face, tracks_file, verbose, quiet):
    """Shots, face tracks and speakers found in INPUT (analysed once, then cached)."""
    from dubber.faces.analyze import open_original_audio
    from dubber.faces.inspect import contact_sheet, format_table

    _setup_logging(verbose, quiet)
    cfg = load_config(preset, {"faces": {"face": face}})
    tracks = _tracks(input_path, cfg, tracks_file, quiet)
    if sheet:
        audio = open_original_audio(input_path)
        try:
            contact_sheet(input_path, tracks, sheet, audio)
        finally:
            if audio is not None:
                audio.close()
    if as_json:
        click.echo(json.dumps(tracks.to_json()))
    else:
        click.echo(format_table(tracks))
        if sheet:
            click.echo(f"wrote {sheet}")


@cli.command("probe")
@click.argument("input_path", metavar="INPUT")
@click.option("--json", "as_json", is_flag=True, help="Print the full description as JSON.")
def probe_command(input_path, as_json):
    """Describe a video as dubber sees it: size, rate, format, colour, streams."""
    from dubber.media.probe import probe

    info = probe(input_path)
    if as_json:
        click.echo(json.dumps(asdict(info), default=_jsonable, indent=2))
    else:
        click.echo(f"{info.path}: {info.describe()}")


@cli.group("weights")
def weights_group() -> None:
    """Trained weights: list them, verify their checksums, describe a preset's models."""


_weights_dir = click.option(
    "--weights", "weights_dir", metavar="DIR",
    help="Weights folder (default: $DUBBER_WEIGHTS, else the repository's weights/).")


@weights_group.command("list")
@_weights_dir
def weights_list(weights_dir):
    """The weights in the manifest and whether their files are present."""
    from dubber.weights_cli import list_weights

    click.echo(list_weights(weights_dir))


@weights_group.command("verify")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@_weights_dir
@click.option("--strict", is_flag=True, help="A missing file is a failure too.")
def weights_verify(names, weights_dir, strict):
    """Check each weight file's sha256, format and dimensions against the manifest."""
    from dubber.errors import WeightsError
    from dubber.weights_cli import verify_weights

    report = verify_weights(weights_dir, list(names) or None, strict=strict)
    click.echo(report.text)
    if not report.ok:
        raise WeightsError("some weights failed verification (see above)")


@weights_group.command("describe")
@click.argument("preset")
def weights_describe(preset):
    """Each model of PRESET with its weights, dimensions and parameter count."""
    from dubber.weights_cli import describe_preset

    click.echo(describe_preset(preset))


def _jsonable(value):
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dub`` console script; returns (and exits with) the exit code."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    code = 0
    try:
        result = cli.main(args=argv, prog_name="dub", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        click.echo(f"dub: error: {exc.format_message()}", err=True)
        code = exc.exit_code  # 2 for usage errors
    except (KeyboardInterrupt, click.exceptions.Abort):
        err = Interrupted("interrupted; no output was written")
        click.echo(f"dub: error: {err}", err=True)
        code = err.exit_code
    except DubberError as exc:
        click.echo(f"dub: error: {exc}", err=True)
        code = exc.exit_code
    except Exception as exc:  # a bug: say so in one line, the traceback with -vv
        if logging.getLogger("dubber").isEnabledFor(logging.DEBUG):
            raise
        click.echo(f"dub: error: internal error ({type(exc).__name__}: {exc}); "
                   "run again with -vv for the traceback and report it", err=True)
        code = 1
    if argv is None:
        sys.exit(code)
    return code
