"""Settings (facewatch/settings.py): defaults, derived values, validation, one list of variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from facewatch.settings import load_config, variables

ROOT = Path(__file__).resolve().parents[2]
TEST_ONLY = {"FACEWATCH_TEST_PG_URL"}  # read by the tests alone (tests/conftest.py)


def test_defaults_derive_from_home_host_and_port(tmp_path: Path) -> None:
    config = load_config({"FACEWATCH_HOME": str(tmp_path), "FACEWATCH_HTTP_PORT": "9001"})
    assert config.database_url == f"sqlite:///{tmp_path / 'facewatch.db'}"
    assert config.media_root == tmp_path / "media" and config.snapshot_dir == tmp_path / "galleries"
    assert config.public_url == "http://127.0.0.1:9001"
    assert config.dashboard is True and config.admin_token is None and config.cleanup_interval_s is None


def test_empty_variables_count_as_unset_and_values_are_parsed(tmp_path: Path) -> None:
    config = load_config({"FACEWATCH_HOME": str(tmp_path), "FACEWATCH_DATABASE_URL": "", "FACEWATCH_ADMIN_TOKEN": "",
                          "FACEWATCH_PUBLIC_URL": "https://fw.example/", "FACEWATCH_DASHBOARD": "0",
                          "FACEWATCH_EXTRACTOR_TARGET_ONGOING_REQUESTS": "2.5", "OTHER": "x"})
    assert config.database_url.startswith("sqlite:///") and config.admin_token is None
    assert config.public_url == "https://fw.example" and config.dashboard is False
    assert config.extractor_target_ongoing_requests == 2.5


def test_the_environment_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEWATCH_GALLERY_SHARDS", "5")
    assert load_config().gallery_shards == 5
    assert load_config({}).gallery_shards == 2  # a given mapping replaces the environment


@pytest.mark.parametrize("name,value", [("FACEWATCH_HTTP_PORT", "eighty"), ("FACEWATCH_GALLERY_SHARDS", "0")])
def test_a_bad_value_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValidationError, match=name.removeprefix("FACEWATCH_").lower()):
        load_config({name: value})


def test_settings_are_frozen() -> None:
    config = load_config({})
    with pytest.raises(ValidationError):
        config.http_port = 1  # type: ignore[misc]


def test_every_variable_the_code_reads_is_a_setting_and_in_the_readme() -> None:
    known = {name for name, _, _ in variables()}
    used: set[str] = set()
    for folder in ("facewatch", "models", "storage", "actors", "serve_apps", "cluster"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"FACEWATCH_[A-Z_]+[A-Z]", path.read_text()))
    assert used - known - TEST_ONLY == set()
    readme = (ROOT / "README.md").read_text()
    assert {name for name in known if f"`{name}`" not in readme} == set()


def test_one_backoff_rule_grows_caps_and_jitters() -> None:
    import random

    from facewatch.backoff import backoff_delay

    assert [backoff_delay(n, 1.0, 2.0, 10.0) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff_delay(10_000, 1.0, 2.0, 60.0) == 60.0  # no float overflow after long outages
    jittered = [backoff_delay(3, 1.0, 2.0, 60.0, jitter=0.5, rng=random.Random(i)) for i in range(50)]
    assert all(2.0 <= d <= 6.0 for d in jittered) and len(set(jittered)) > 1


def test_api_replicas_default_to_two_on_two_cores_and_can_be_set() -> None:
    import os

    assert load_config({}).api_replicas == (2 if (os.cpu_count() or 1) >= 2 else 1)
    assert load_config({"FACEWATCH_API_REPLICAS": "0"}).api_replicas == load_config({}).api_replicas
    assert load_config({"FACEWATCH_API_REPLICAS": "3"}).api_replicas == 3
    with pytest.raises(ValidationError, match="api_replicas"):
        load_config({"FACEWATCH_API_REPLICAS": "-1"})
