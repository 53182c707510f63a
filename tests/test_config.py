"""Configuration: defaults < preset < command line, and loud failures on typos."""

from __future__ import annotations

import pytest

from dubber.config import available_presets, load_config
from dubber.errors import UsageError


def test_shipped_presets_load():
    assert {"fast", "4k-film", "unittest"} <= set(available_presets())
    for name in available_presets():
        assert load_config(name).preset == name


def test_precedence_cli_over_preset_over_defaults(tmp_path):
    preset = tmp_path / "studio.yaml"
    preset.write_text("media:\n  chunk_frames: 5\nencode:\n  crf: 30\n")
    cfg = load_config(str(preset), {"encode": {"crf": 12, "codec": None}})
    assert cfg.media.chunk_frames == 5  # from the preset
    assert cfg.encode.crf == 12  # the command line wins
    assert cfg.encode.codec == "x264"  # None on the command line falls through to default
    assert cfg.media.queue_depth == 1  # default
    assert cfg.preset == "studio"


@pytest.mark.parametrize("text, words", [
    ("media:\n  chunk_frame: 5\n", "media.chunk_frame"),
    ("medai:\n  chunk_frames: 5\n", "medai"),
    ("media:\n  chunk_frames: five\n", "must be int"),
    ("encode:\n  codec: vp9\n", "unknown video codec"),
    ("media:\n  chunk_frames: 0\n", "at least 1"),
    ("runtime:\n  device: tpu\n", "unknown device"),
    ("- not a mapping\n", "mapping"),
    ("models:\n  aperture_gain: -1\n", "aperture_gain must be in"),
    ("runtime:\n  segment_seconds: .nan\n", "runtime.segment_seconds must be a finite"),
    ("media:\n  analysis_scale: .inf\n", "media.analysis_scale must be a finite"),
])
def test_typos_and_bad_values_are_usage_errors(tmp_path, text, words):
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    with pytest.raises(UsageError, match=words):
        load_config(str(preset))


def test_config_is_frozen():
    cfg = load_config("fast")
    with pytest.raises(AttributeError):
        cfg.media.chunk_frames = 3
