import pytest

from app import Config, create_app


@pytest.fixture
def config(tmp_path):
    return Config(cache_dir=tmp_path / "cache")


@pytest.fixture
def dash_app(config):
    return create_app(config)


@pytest.fixture
def client(dash_app):
    return dash_app.server.test_client()
