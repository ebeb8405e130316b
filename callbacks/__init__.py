"""Wiring between the page and the backend: the only package that knows both Dash and `explain`."""
from __future__ import annotations


def register(app, config) -> None:
    """Attach every callback to `app`."""
