from __future__ import annotations

from pathlib import Path

import pytest

from dubber.cli import main
from tests.helpers import make_clip, make_tone
from tests.train_fixtures import tiny_corpus, tiny_weights  # noqa: F401  (training tests)


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """The suite never reads or writes the user's analysis cache (~/.cache/dubber): a
    cached analysis made by other code must not decide what a test sees."""
    import os

    folder = tmp_path_factory.mktemp("dubber-cache")
    old = os.environ.get("DUBBER_CACHE")
    os.environ["DUBBER_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("DUBBER_CACHE", None)
    else:
        os.environ["DUBBER_CACHE"] = old


@pytest.fixture
def dub(capsys):
    """Run the ``dub`` CLI in-process: ``dub("in.mp4", "--audio", "x.wav")``."""

    def run(*args) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def gen(tmp_path_factory) -> Path:
    """A session-wide folder of generated clips."""
    return tmp_path_factory.mktemp("generated")


@pytest.fixture(scope="session")
def clip_320(gen) -> Path:
    """1 s, 320x240, 25 fps, H.264 with AAC audio."""
    return make_clip(gen / "clip_320.mp4")


@pytest.fixture(scope="session")
def tone_3s(gen) -> Path:
    return make_tone(gen / "tone_3s.wav", 3.0)


@pytest.fixture(scope="session")
def tone_half(gen) -> Path:
    return make_tone(gen / "tone_half.wav", 0.5)


@pytest.fixture(scope="module")
def driver():
    """One mouth driver per test module; its recogniser workers stop at the end."""
    from dubber.mouth.driver import MouthDriver

    with MouthDriver() as d:
        yield d
