"""``dub train ... --set KEY=VALUE``: values converted to the setting's type, and every
mistake (an unknown key, a word where a number goes, NaN, a typo in yes/no) refused."""

from __future__ import annotations

import pytest

from dubber.errors import UsageError
from dubber.train.hparams import LoopConfig, override


def test_values_take_the_settings_types():
    hp = override(LoopConfig(), {"steps": "12", "lr": "3e-4", "keep_best": "yes"})
    assert (hp.steps, hp.lr, hp.keep_best) == (12, 3e-4, True)
    assert override(hp, {"keep-best": "off"}).keep_best is False


@pytest.mark.parametrize("key, value, words", [
    ("stpes", "12", "unknown training setting 'stpes'"),
    ("steps", "twelve", "must be int"),
    ("lr", "nan", "must be a finite number"),
    ("lr", "inf", "must be a finite number"),
    ("keep_best", "ture", "must be bool"),
])
def test_mistakes_are_usage_errors(key, value, words):
    with pytest.raises(UsageError, match=words):
        override(LoopConfig(), {key: value})


@pytest.mark.parametrize("key, value, words", [
    ("align", "ture", "must be bool"),
    ("lr", "nan", "must be a finite number"),
])
def test_the_sync_models_settings_refuse_the_same_mistakes(tmp_path, key, value, words):
    from dubber.config import load_config
    from dubber.sync.train import train_sync_model

    with pytest.raises(UsageError, match=words):  # before any video is read
        train_sync_model(tmp_path, load_config("unittest"), {key: value}, publish=False)
