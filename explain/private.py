"""The one rule for folders whose contents camlens trusts (caches, kept passes): they are this
user's own. Light on purpose (no TensorFlow): app.py checks its cache folder with it at start.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_folder(path: Path) -> Path:
    """`path`, created owner-only (0700) when missing; an existing one must be a real folder owned
    by this user and writable by no one else, since the caches in it are trusted. Any other case
    raises ValueError with a one-line reason (nothing is read from it)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.lstat()
    except OSError as error:
        raise ValueError(f"cache folder {path}: {error.strerror or error}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"cache folder {path} is not a folder (a link or a file): refusing it")
    if st.st_uid != os.getuid():
        raise ValueError(f"cache folder {path} belongs to another user (uid {st.st_uid}): refusing it; "
                         "set CAMLENS_CACHE_DIR to a folder of your own")
    if st.st_mode & 0o022:
        raise ValueError(f"cache folder {path} is writable by other users "
                         f"(mode {stat.S_IMODE(st.st_mode):o}): refusing it; chmod 700 it or choose another")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"cache folder {path} is not writable by this user")
    return path
