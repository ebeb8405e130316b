from pathlib import Path

import pytest

from app import Config, available_themes


def test_defaults_without_environment():
    config = Config.from_env(env={})
    assert (config.host, config.port, config.log_level) == ("127.0.0.1", 8050, "INFO")
    assert config.models_dir is None and config.redis_url is None


def test_environment_then_flags_override():
    env = {"CAMLENS_PORT": "9000", "CAMLENS_HOST": "0.0.0.0", "CAMLENS_LOG_LEVEL": "debug",
           "CAMLENS_MODELS_DIR": "/srv/models", "CAMLENS_DEBUG": "yes"}
    config = Config.from_env(env=env, argv=["--port", "9100"])
    assert config.port == 9100 and config.host == "0.0.0.0"
    assert config.log_level == "DEBUG" and config.debug is True
    assert config.models_dir == Path("/srv/models")


@pytest.mark.parametrize("env, message", [
    ({"CAMLENS_PORT": "eighty"}, "port: cannot read"),
    ({"CAMLENS_PORT": "70000"}, "port must be"),
    ({"CAMLENS_LOG_LEVEL": "LOUD"}, "log level"),
    ({"CAMLENS_THEME": "no-such-theme"}, "theme"),
    ({"CAMLENS_MAX_UPLOAD_MB": "0"}, "upload limits"),
])
def test_bad_values_get_a_clear_message(env, message):
    with pytest.raises(ValueError, match=message):
        Config.from_env(env=env)


def test_bootswatch_themes_are_offered_from_the_installed_package():
    themes = available_themes()
    assert themes[0] == "bootstrap" and "flatly" in themes


def test_the_cache_folder_is_private_and_a_planted_one_is_refused(tmp_path):
    """The caches are trusted, so their folder must be this user's alone: created 0700, and a folder
    writable by others (or a link, or a file) is refused with one line before anything is read."""
    import os
    import stat

    from app import private_folder

    made = private_folder(tmp_path / "new" / "camlens")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    planted = tmp_path / "planted"
    planted.mkdir()
    planted.chmod(0o777)
    with pytest.raises(ValueError, match="writable by other users"):
        private_folder(planted)
    (tmp_path / "link").symlink_to(made)
    with pytest.raises(ValueError, match="not a folder"):
        private_folder(tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="cache folder"):
        private_folder(tmp_path / "file")
    if os.getuid() == 0:   # root can hand a folder to another user: it is refused too
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 12345, 12345)
        with pytest.raises(ValueError, match="belongs to another user"):
            private_folder(other)


def test_an_unusable_cache_folder_stops_the_app_with_one_line(tmp_path):
    import subprocess
    import sys

    planted = tmp_path / "planted"
    planted.mkdir()
    planted.chmod(0o777)
    done = subprocess.run([sys.executable, "app.py", "--cache-dir", str(planted)], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("camlens: cache folder")
