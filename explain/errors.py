"""User-facing errors of the explain engine.

Every error carries a one-line message (``str(e)``) written for the person using the app or the CLI:
the app shows it as is, the CLI prints it and exits non-zero.
"""

from __future__ import annotations


class ExplainError(Exception):
    """Base class: anything the user can fix (bad input, bad option, unsuitable model)."""

    def __init__(self, message: str):
        # One line, always: callers display str(e) verbatim.
        super().__init__(" ".join(str(message).split()))


class LayerError(ExplainError):
    """The requested layer does not exist or has no spatial (4-D) output."""


class MethodNotApplicable(ExplainError):
    """The method cannot run on this model/layer (e.g. CAM without a GAP + Dense head)."""


class ImageError(ExplainError):
    """The image cannot be decoded or breaks the limits."""


class Cancelled(ExplainError):
    """The caller's cancel() callback asked to stop; raised between batches."""

    def __init__(self, message: str = "cancelled"):
        super().__init__(message)
