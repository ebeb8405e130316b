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
