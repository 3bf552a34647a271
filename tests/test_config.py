"""Configuration: file, environment overrides, clear errors, the reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamgate.config import load_settings, parse_listen
from streamgate.errors import ConfigError
from streamgate.reference import render_reference

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sg.toml"
    path.write_text(text)
    return path


def test_every_shipped_config_is_valid() -> None:
    files = sorted((ROOT / "conf").glob("*.toml"))
    assert files
    for path in files:
        load_settings(path)


def test_embedded_default_is_an_origin_on_loopback() -> None:
    settings = load_settings(ROOT / "conf" / "streamgate.toml")
    assert settings.mode == "origin"
    assert settings.rtmp.listen == "127.0.0.1:1935"
    assert settings.rtmp.merge_ms <= 50


def test_file_values_are_used(tmp_path: Path) -> None:
    path = write(tmp_path, '[rtmp]\nlisten = "127.0.0.1:2000"\nmerge_ms = 350\n')
    settings = load_settings(path)
    assert settings.rtmp.listen == "127.0.0.1:2000"
    assert settings.rtmp.merge_ms == 350
    assert settings.origin.publish_idle_timeout == 10.0


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[rtmp]\nlisten = "127.0.0.1:2000"\n')
    monkeypatch.setenv("STREAMGATE_RTMP__LISTEN", "127.0.0.1:3000")
    monkeypatch.setenv("STREAMGATE_ORIGIN__PLAY_WAIT", "2.5")
    settings = load_settings(path)
    assert settings.rtmp.listen == "127.0.0.1:3000"
    assert settings.origin.play_wait == 2.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[rtmp]\nchunk_size = 16\n",
            "[rtmp] chunk_size: Input should be greater than or equal to 128",
        ),
        ("[rtmp]\nbogus = 1\n", "[rtmp] bogus: unknown setting"),
        ('[rtmp]\nlisten = "nowhere"\n', "[rtmp] listen: Value error, expected HOST:PORT"),
        (
            '[log]\nlevel = "loud"\n',
            "[log] level: Input should be 'debug', 'info', 'warning' or 'error'",
        ),
        ("[rtmp\n", "not valid TOML"),
    ],
)
def test_invalid_values_name_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.description.startswith(f"{path}: ")
    assert message in err.value.description


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.toml")


def test_invalid_environment_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMGATE_RTMP__MERGE_MS", "lots")
    with pytest.raises(ConfigError, match=r"\[rtmp\] merge_ms"):
        load_settings(None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:1935", ("127.0.0.1", 1935)),
        ("[::1]:80", ("::1", 80)),
        (":1935", ("0.0.0.0", 1935)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["1935", "host:", "host:99999", "host:x"])
def test_parse_listen_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(value)


def test_reference_document_is_in_sync() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    hint = "regenerate: streamgate config-reference > docs/configuration.md"
    assert committed == render_reference(), hint


def test_reference_documents_every_field() -> None:
    text = render_reference()
    for key in ("listen", "merge_ms", "play_wait", "publish_idle_timeout", "gop_cache", "level"):
        assert f"`{key}`" in text
    assert "None |" not in text  # every field has a description
