"""Batch manifests: a season of episodes in one YAML file, checked before anything runs.

::

    defaults:                 # any `dub` option, for every episode
      preset: fast
      codec: x264
    episodes:
      - name: ep01
        input: ep01.mp4
        audio: ep01.hindi.wav
        output: out/ep01.mp4
        crf: 20               # any `dub` option again, for this episode only
      - name: ep02
        input: ep02.mp4
        stems: {ANNA: anna.wav, BEN: ben.wav}   # per-character dub stems instead of audio
        stem_tracks: {ANNA: 3, BEN: 5}          # optional: track ids (`dub inspect`)
        output: out/ep02.mp4

Options take the long names of ``dub``'s options (``keep-original-audio`` or
``keep_original_audio``); ``set: {section: {field: value}}`` reaches any configuration field.
Paths are relative to the manifest's folder. Every problem is reported at once, each naming
the episode, the key and what is wrong; nothing runs while one is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping

import yaml

from dubber.config import DEFAULT_PRESET, VIDEO_CODECS, Config, load_config
from dubber.errors import DubberError, UsageError
from dubber.files import file_key, same_file
from dubber.languages import language_problem
from dubber.media.encode import CONTAINERS, check_container


# option -> (config section, field, type check, description of the allowed values)
def _int(lo: int, hi: int | None = None):
    def check(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (
            hi is None or v <= hi)
    return check, f"an integer {lo}..{hi}" if hi is not None else f"an integer >= {lo}"


def _is_bool(v):
    return isinstance(v, bool)


def _is_str(v):
    return isinstance(v, str) and v != ""


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


_OPTIONS: dict[str, tuple[str | None, str, Any, str]] = {
    "device": ("runtime", "device", _is_str, "a device name (auto, cpu, cuda)"),
    "passthrough": ("runtime", "passthrough", _is_bool, "true or false"),
    "segment_seconds": ("runtime", "segment_seconds", _is_number, "seconds >= 0"),
    "chunk_frames": ("media", "chunk_frames", *_int(1)),
    "codec": ("encode", "codec", lambda v: v in VIDEO_CODECS, "one of " + ", ".join(VIDEO_CODECS)),
    "crf": ("encode", "crf", *_int(0, 51)),
    "speed": ("encode", "speed", _is_str, "an x264/x265 speed preset"),
    "keep_original_audio": ("encode", "keep_original_audio", _is_bool, "true or false"),
    "dub_language": ("encode", "dub_language",
                     lambda v: isinstance(v, str) and language_problem(v) is None,
                     "a lowercase ISO 639-2 code (hin, fra, zho; not hi)"),
    "strict_length": ("encode", "strict_length", _is_bool, "true or false"),
    "face": ("faces", "face", lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
             "speaker, largest, all or a track id"),
}
# Options that are not configuration fields.
_OTHER = {"preset": (_is_str, "a preset name or YAML path"),
          "weights": (_is_str, "a folder"),
          "tracks": (_is_str, "a tracks file"),
          "force": (_is_bool, "true or false"),
          # the sync check of the output against the dub after the render (``dub``'s
          # --check; off in a batch unless asked for); ``no-check: true`` is check: false
          "check": (_is_bool, "true or false"),
          "no_check": (_is_bool, "true or false"),
          "report": (_is_str, "a file name (the sync check's JSON report)"),
          "set": (lambda v: isinstance(v, Mapping), "a mapping {section: {field: value}}")}
# ``dub`` options a manifest does not take, and why.
_BATCH_WIDE = {"resume": "every episode of a batch resumes",
               "verbose": "give -v to dub batch", "quiet": "give -q to dub batch"}
_EPISODE_KEYS = {"name", "input", "audio", "stems", "stem_tracks", "output"}


@dataclass(frozen=True)
class Episode:
    """One title of a manifest, resolved and checked."""

    name: str
    input: Path
    output: Path
    cfg: Config
    audio: Path | None = None  # the dub track, or None with stems
    stems: dict[str, Path] = field(default_factory=dict)  # character -> stem file
    stem_tracks: dict[str, int] = field(default_factory=dict)  # character -> track id
    weights: Path | None = None
    tracks: Path | None = None
    force: bool = False
    check: bool = False  # run the sync check of the output after the render
    report: Path | None = None  # the sync check's full report (implies the check)

    def spec(self) -> dict:
        """A plain, picklable description (for worker processes and Ray tasks)."""
        return {"name": self.name, "input": str(self.input), "output": str(self.output),
                "audio": str(self.audio) if self.audio else None,
                "stems": {k: str(v) for k, v in self.stems.items()},
                "stem_tracks": dict(self.stem_tracks),
                "weights": str(self.weights) if self.weights else None,
                "tracks": str(self.tracks) if self.tracks else None,
                "force": self.force, "check": self.check,
                "report": str(self.report) if self.report else None}


@dataclass(frozen=True)
class Manifest:
    path: Path
    episodes: tuple[Episode, ...]
    raw: dict  # the episodes' option layers, by name (to rebuild cfg in a worker)

    def episode(self, name: str) -> Episode:
        return next(e for e in self.episodes if e.name == name)


def _norm(key: Any) -> str:
    return str(key).replace("-", "_")


def _options(entry: Mapping, skip: Collection[str] = _EPISODE_KEYS) -> dict:
    """An option layer with normalised keys (``no-check: B`` read as ``check: not B``),
    without the keys in ``skip``."""
    out = {_norm(k): v for k, v in entry.items() if k not in skip}
    if isinstance(out.get("no_check"), bool) and "check" not in out:
        out["check"] = not out.pop("no_check")
    return out


def load_manifest(path: str | Path, check_files: bool = True,
                  done: Collection[str] = ()) -> Manifest:
    """Read and check a manifest.

    Besides the manifest itself, no episode may write over a file another one reads (its
    input, audio or stems), nor two episodes the same output. With ``check_files`` the
    inputs must exist and every output passes the single-title command's own check (not an
    existing file without ``force``, a writable folder), except the outputs of the episodes
    named in ``done`` that exist (a batch skips those).

    Raises:
        UsageError: listing every problem, each as ``episode "NAME": KEY: what is wrong``.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"the manifest {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"manifest {path.name} is not valid YAML: "
                         f"{str(exc).splitlines()[0]}") from None
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise UsageError(f"manifest {path.name}: must be a mapping with 'episodes'")
    for key in set(data) - {"defaults", "episodes"}:
        problems.append(f"{key}: unknown key (known: defaults, episodes)")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        problems.append("defaults: must be a mapping of dub options")
        defaults = {}
    problems += [f"defaults: {p}" for p in _check_options(_options(defaults, ()))]
    episodes = data.get("episodes")
    if not isinstance(episodes, list) or not episodes:
        problems.append("episodes: must be a non-empty list")
        episodes = []
    base = path.parent
    out: list[Episode] = []
    raw: dict[str, dict] = {}
    names: set[str] = set()
    outputs: dict[tuple, str] = {}  # file_key -> episode
    sources: dict[tuple, tuple[str, str]] = {}  # file_key -> (episode, what it is to it)
    for i, entry in enumerate(episodes):
        label = f"episode #{i + 1}"
        if not isinstance(entry, Mapping):
            problems.append(f"{label}: must be a mapping")
            continue
        name = entry.get("name")
        if isinstance(name, str) and name:
            label = f'episode "{name}"'
            if name in names:
                problems.append(f"{label}: name: used twice")
            names.add(name)
        else:
            problems.append(f"{label}: name: missing or not a string")
            name = f"#{i + 1}"
        layer = {**_options(defaults, ()), **_options(entry)}
        mine = [f"{label}: {p}" for p in _check_options(_options(entry))]
        problems += mine
        ep, errs = _episode(name, entry, layer, base, check_files)
        problems += [f"{label}: {e}" for e in errs]
        if ep is not None and not mine:
            key = file_key(ep.output)
            if key in outputs:
                problems.append(f"{label}: output: the same file as episode "
                                f'"{outputs[key]}"')
            outputs[key] = name
            for role, f in (("input", ep.input), ("audio", ep.audio), *(
                    (f"stems.{who}", p) for who, p in ep.stems.items())):
                if f is not None:
                    sources.setdefault(file_key(f), (name, role))
            out.append(ep)
            raw[name] = layer
    # An output over a file an episode reads (its own input is checked in _episode).
    clashes = set()
    for ep in out:
        hit = sources.get(file_key(ep.output))
        if hit is not None and hit != (ep.name, "input"):
            problems.append(_clash(ep.name, "output", hit))
            clashes.add(ep.name)
        if ep.report is not None:  # the sync check's report is written too
            key = file_key(ep.report)
            hit = sources.get(key) or ((outputs[key], "output") if key in outputs else None)
            if hit is not None:
                problems.append(_clash(ep.name, "report", hit))
    if check_files:
        problems += _check_outputs([e for e in out if e.name not in clashes], done)
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more"
                                           if len(problems) > 6 else "")
        raise UsageError(f"manifest {path.name}: {shown}")
    return Manifest(path, tuple(out), raw)


def _clash(name: str, key: str, hit: tuple[str, str]) -> str:
    """The problem of episode ``name`` writing its ``key`` over ``hit`` (episode, role)."""
    whose = "its own" if hit[0] == name else f'episode "{hit[0]}"\'s'
    return f'episode "{name}": {key}: is {whose} {hit[1]}'


def _check_outputs(episodes: list[Episode], done: Collection[str]) -> list[str]:
    """The single-title command's output check (``dubber.pipeline.check_output``) for every
    episode that will render."""
    from dubber.pipeline import check_output

    problems = []
    for ep in episodes:
        if ep.name in done and ep.output.exists():
            continue
        try:
            check_output(ep.input, ep.output, ep.force, ep.audio, make_folder=True)
        except DubberError as exc:
            msg = str(exc).replace("add --force", "add force: true").replace(" with -o", "")
            problems.append(f'episode "{ep.name}": output: {msg}')
    return problems


def _check_options(options: Mapping[str, Any]) -> list[str]:
    problems = []
    if "check" in options and options.get("no_check") is options["check"]:
        problems.append("check, no-check: contradict each other; give one")
    for key, value in options.items():
        if key in _OPTIONS:
            check, what = _OPTIONS[key][2], _OPTIONS[key][3]
        elif key in _OTHER:
            check, what = _OTHER[key]
        elif key in _BATCH_WIDE:
            problems.append(f"{key}: not a manifest option: {_BATCH_WIDE[key]}")
            continue
        else:
            problems.append(f"{key}: not a dub option")
            continue
        if not check(value):
            problems.append(f"{key}: must be {what}, got {value!r}")
    return problems


def config_for(layer: Mapping[str, Any]) -> Config:
    """The configuration of one episode's options (defaults merged with its own)."""
    overrides: dict[str, dict[str, Any]] = {}
    for section, values in (layer.get("set") or {}).items():
        overrides.setdefault(section, {}).update(values or {})
    for key, value in layer.items():
        if key in _OPTIONS:
            section, fld = _OPTIONS[key][0], _OPTIONS[key][1]
            overrides.setdefault(section, {})[fld] = value
    return load_config(layer.get("preset", DEFAULT_PRESET), overrides)


def _episode(name: str, entry: Mapping, layer: dict, base: Path,
             check_files: bool) -> tuple[Episode | None, list[str]]:
    errs: list[str] = []

    def file(key: str, value: Any, must_exist: bool = True) -> Path | None:
        if not isinstance(value, str) or not value:
            errs.append(f"{key}: must be a file name, got {value!r}")
            return None
        p = Path(value).expanduser()
        p = p if p.is_absolute() else base / p
        if must_exist and check_files and not p.is_file():
            errs.append(f"{key}: {value} does not exist")
        return p

    src = file("input", entry.get("input")) if "input" in entry else None
    if "input" not in entry:
        errs.append("input: missing")
    audio, stems, stem_tracks = None, {}, {}
    if "audio" in entry and "stems" in entry:
        errs.append("audio, stems: give one dub track or per-character stems, not both")
    elif "audio" in entry:
        audio = file("audio", entry["audio"])
    elif "stems" in entry:
        raw = entry["stems"]
        if not isinstance(raw, Mapping) or not raw:
            errs.append("stems: must be a mapping {CHARACTER: file}")
        else:
            for who, f in raw.items():
                stems[str(who)] = file(f"stems.{who}", f)
        mapping = entry.get("stem_tracks") or {}
        if not isinstance(mapping, Mapping):
            errs.append("stem_tracks: must be a mapping {CHARACTER: track id}")
        else:
            for who, tid in mapping.items():
                if str(who) not in stems:
                    errs.append(f"stem_tracks.{who}: no stem of that name")
                elif not isinstance(tid, int) or isinstance(tid, bool):
                    errs.append(f"stem_tracks.{who}: must be a track id (an integer), "
                                f"got {tid!r}")
                else:
                    stem_tracks[str(who)] = tid
    else:
        errs.append("audio: missing (or stems)")
    if "stem_tracks" in entry and "stems" not in entry:
        errs.append("stem_tracks: only with stems")
    output = None
    if "output" not in entry:
        errs.append("output: missing")
    else:
        output = file("output", entry["output"], must_exist=False)
        if output is not None and output.suffix.lower() not in CONTAINERS:
            errs.append(f"output: {entry['output']} must end in .mp4, .mov or .mkv")
        if output is not None and src is not None and same_file(output, src):
            errs.append("output: is the input")
    weights = file("weights", layer["weights"], must_exist=False) if "weights" in layer else None
    tracks = file("tracks", layer["tracks"]) if "tracks" in layer else None
    report = file("report", layer["report"], must_exist=False) if "report" in layer else None
    check = bool(layer.get("check", False)) or report is not None
    if stems and check:
        errs.append("check: the sync check takes one dub track, not stems")
    if errs:
        return None, errs
    try:
        cfg = config_for(layer)
    except DubberError as exc:
        return None, [f"options: {exc}"]
    if stems and cfg.runtime.passthrough:
        return None, ["stems: need the model stages (not passthrough)"]
    try:
        check_container(cfg.encode, output)
    except UsageError as exc:
        return None, [f"output: {exc}"]
    return Episode(name, src, output, cfg, audio, stems, stem_tracks, weights, tracks,
                   bool(layer.get("force", False)), check, report), []
