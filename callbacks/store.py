"""Server-side state: uploads, computed heatmaps and counters, in size-bounded disk caches.

Nothing a user uploads lives in a Python global or in the browser: an upload is decoded once and
kept under its content hash (SHA-256 of the file), so two people only ever reach an image whose
bytes they already have. Heatmaps are kept under a key of everything that determines them (image,
model, layer, method, target, score, counterfactual, that method's options), so changing the
display (colormap, opacity, view, scale) re-draws from the cache and never re-runs a model.
diskcache is process- and thread-safe, so gunicorn workers and background jobs share it. With
CAMLENS_REDIS_URL the same caches live in Redis instead (`RedisCache`), so Celery workers on other
machines read the uploads and write heatmaps where the web server finds them.

Nothing read back runs code: values are JSON with arrays in an .npz (`encode`, no pickle) on disk
(`SafeDisk`) and in Redis alike. The caches heal themselves: a value that fails to decode is
dropped (and so recomputed), a damaged SQLite index is moved aside and rebuilt, each with one
log line.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import logging
import sqlite3
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import diskcache
import numpy as np

log = logging.getLogger("camlens.store")

#: Uploads larger than this (long side, px) are explained at this size: the models see 224-512 px
#: anyway, and it bounds the memory and cache cost of a heatmap (float32 at the image's size).
WORK_SIDE = 1024
#: Long side of the copies shown in the browser (figures carry JPEGs of this size).
DISPLAY_SIDE = 720


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def fit(image: np.ndarray, side: int) -> np.ndarray:
    """Shrink so the long side is at most `side` (never enlarge); INTER_AREA avoids aliasing."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class StoredImage:
    key: str
    image: np.ndarray       # what is explained (long side <= WORK_SIDE)
    display: np.ndarray     # what the browser is sent (long side <= DISPLAY_SIDE)
    original_size: tuple[int, int]  # (width, height) of the upload

    @property
    def note(self) -> str:
        h, w = self.image.shape[:2]
        return "" if (w, h) == self.original_size else f"explained at {w}×{h}"


class RedisCache:
    """The part of diskcache.Cache's API the Store uses, on Redis. Values are encoded without
    pickle (arrays as .npy, the rest as JSON), so whoever can write to Redis cannot make the app
    run code. Every key expires (`ttl`); give the Redis server a `maxmemory` with an LRU policy
    to bound it by size too."""

    def __init__(self, client, prefix: str, ttl: int):
        self.client, self.prefix, self.ttl = client, f"camlens:{prefix}:", ttl

    def _key(self, key) -> str:
        return self.prefix + repr(key)

    def get(self, key, default=None):
        raw = self.client.get(self._key(key))
        return default if raw is None else decode(raw)

    def set(self, key, value, expire: float | None = None) -> None:
        self.client.set(self._key(key), encode(value), ex=int(expire or self.ttl))

    def incr(self, key, delta: int = 1, default: int = 0) -> int:
        """Counters start at 0 (the only `default` the Store uses) and never expire."""
        return self.client.incrby(self._key(key) + ":n", delta)

    def count(self, key) -> int:
        return int(self.client.get(self._key(key) + ":n") or 0)

    def iterkeys(self):
        for name in self.client.scan_iter(match=self.prefix + "*"):
            name = name.decode() if isinstance(name, bytes) else name
            yield ast.literal_eval(name[len(self.prefix):].removesuffix(":n"))


def encode(value) -> bytes:
    """JSON with numpy arrays and StoredImages lifted out into an .npz beside it."""
    arrays: list[np.ndarray] = []

    def lift(v):
        if isinstance(v, np.ndarray):
            arrays.append(v)
            return {"__array__": len(arrays) - 1}
        if isinstance(v, StoredImage):
            return {"__image__": lift({"key": v.key, "image": v.image, "display": v.display,
                                       "original_size": list(v.original_size)})}
        if isinstance(v, dict):
            return {str(k): lift(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [lift(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v

    doc = json.dumps(lift(value)).encode()
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return len(doc).to_bytes(8, "big") + doc + buffer.getvalue()


def decode(raw: bytes):
    size = int.from_bytes(raw[:8], "big")
    doc = json.loads(raw[8:8 + size])
    arrays = np.load(io.BytesIO(raw[8 + size:]), allow_pickle=False)

    def drop(v):
        if isinstance(v, dict):
            if "__array__" in v:
                return arrays[f"arr_{v['__array__']}"]
            if "__image__" in v:
                d = drop(v["__image__"])
                return StoredImage(d["key"], d["image"], d["display"], tuple(d["original_size"]))
            return {k: drop(x) for k, x in v.items()}
        if isinstance(v, list):
            return [drop(x) for x in v]
        return v

    return drop(doc)


class DamagedValue(Exception):
    """A cached value that cannot be read back (damaged, or not written by camlens)."""


#: What a damaged value raises while decoding.
_UNREADABLE = (DamagedValue, ValueError, KeyError, IndexError, TypeError, OSError, EOFError,
               zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError)


class SafeDisk(diskcache.Disk):
    """diskcache storage that never pickles: keys are strings, numbers stay numbers (counters
    need diskcache's raw integers), every other value is `encode`d and `decode`d. A pickled key or
    value in the database (written by anything but camlens) is refused as damaged, never loaded."""

    def put(self, key):
        if not isinstance(key, str):
            raise TypeError(f"cache keys are strings, not {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise DamagedValue("a pickled key")
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return super().store(value, read, key)
        return super().store(encode(value), False, key)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            raise DamagedValue("a pickled value")
        data = super().fetch(mode, filename, value, read)
        return decode(data) if isinstance(data, bytes) else data


def meta_key(*parts) -> str:
    """The string key of a small shared record (caches take strings only)."""
    return json.dumps(parts)


class HealingCache:
    """A size-bounded diskcache on SafeDisk that repairs itself: a value that does not decode is
    deleted (a miss, so it is recomputed); a damaged database (sqlite3.DatabaseError, e.g. a
    corrupt header) is moved aside as `<name>.damaged-<time>` and started afresh."""

    #: How values are stored (a SafeDisk; the background-job cache stores Dash's values its own way).
    disk = SafeDisk

    def __init__(self, path: Path, **settings):
        self.path, self.settings = Path(path), settings
        self.cache: diskcache.Cache | None = None
        self.cache = self._open()

    def _open(self) -> diskcache.Cache:
        try:
            return diskcache.Cache(str(self.path), disk=self.disk, **self.settings)
        except sqlite3.DatabaseError as error:
            return self._rebuild(error)

    def _rebuild(self, error) -> diskcache.Cache:
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.time_ns()}")
        log.warning("cache %s is damaged (%s): moved aside to %s and started afresh", self.path, error,
                    aside.name)
        if self.cache is not None:
            try:
                self.cache.close()
            except Exception:  # noqa: BLE001 - closing a broken cache may fail too
                pass
        try:
            self.path.rename(aside)
        except OSError:
            pass  # another worker moved it first
        self.cache = diskcache.Cache(str(self.path), disk=self.disk, **self.settings)
        return self.cache

    @property
    def size_limit(self) -> int:
        return self.cache.size_limit

    def _guard(self, action, fallback=None):
        """action(), or after a damaged database is rebuilt: fallback() (default: action again,
        on the fresh database)."""
        try:
            return action()
        except sqlite3.DatabaseError as error:
            self._rebuild(error)
            return (fallback or action)()

    def get(self, key, default=None):
        def read():
            try:
                return self.cache.get(key, default)
            except _UNREADABLE as error:
                log.warning("cache %s: dropped an unreadable value (%s: %s)", self.path.name,
                            type(error).__name__, error)
                self.cache.delete(key)
                return default
        return self._guard(read, lambda: default)

    def set(self, key, value, expire: float | None = None) -> None:
        self._guard(lambda: self.cache.set(key, value, expire=expire))

    def incr(self, key, delta: int = 1, default: int = 0) -> int:
        return self._guard(lambda: self.cache.incr(key, delta, default=default))

    def delete(self, key) -> bool:
        return self._guard(lambda: self.cache.delete(key), lambda: False)

    def transact(self):
        """diskcache's transaction (a context manager) on the current database."""
        return self.cache.transact()

    def count(self, key) -> int:
        value = self.get(key, 0)
        return int(value) if isinstance(value, (int, float)) else 0

    def iterkeys(self):
        try:
            return list(self.cache.iterkeys())
        except _UNREADABLE:   # a pickled key planted in the index
            self._rebuild(DamagedValue("a key that is not camlens'"))
            return []
        except sqlite3.DatabaseError as error:
            self._rebuild(error)
            return []


class Store:
    """The app's caches: uploads, results (heatmaps, predictions) and meta; on disk under `root`,
    or in Redis when `redis` (a redis-py client) is given."""

    def __init__(self, root: Path, uploads_mb: int = 256, results_mb: int = 1024, redis=None,
                 ttl: int = 6 * 3600):
        if redis is not None:
            self.uploads = RedisCache(redis, "uploads", ttl)
            self.results = RedisCache(redis, "results", ttl)
            self.meta = RedisCache(redis, "meta", 7 * 24 * 3600)
            return
        root = Path(root)
        policy = "least-recently-used"
        self.uploads = HealingCache(root / "uploads", size_limit=uploads_mb * 2**20, eviction_policy=policy)
        self.results = HealingCache(root / "results", size_limit=results_mb * 2**20, eviction_policy=policy)
        self.meta = HealingCache(root / "meta", size_limit=64 * 2**20)

    # -- uploads -------------------------------------------------------------------------------
    def put_image(self, key: str, image: np.ndarray) -> StoredImage:
        stored = StoredImage(key, fit(image, WORK_SIDE), fit(image, DISPLAY_SIDE),
                             (int(image.shape[1]), int(image.shape[0])))
        self.uploads.set(key, stored)
        return stored

    def image(self, key: str | None) -> StoredImage | None:
        return self.uploads.get(key) if key else None

    # -- results -------------------------------------------------------------------------------
    def get(self, key: str):
        return self.results.get(key)

    def put(self, key: str, value) -> None:
        self.results.set(key, value)

    # -- small shared records ------------------------------------------------------------------
    def count(self, name: str, by: int = 1) -> None:
        self.meta.incr(meta_key("count", name), by, default=0)

    def counts(self) -> dict[str, int]:
        keys = [json.loads(k) for k in self.meta.iterkeys() if isinstance(k, str) and k.startswith('["count"')]
        return {k[1]: self.meta.count(meta_key(*k)) for k in keys}

    def pace(self, model: str, kind: str = "single") -> float | None:
        """Seconds per model pass last measured on `model` (a running mean), for cost estimates.
        kind "single": one image per call (predictions, gradient methods); "batched": the slow
        methods' batched passes, several times cheaper per image ("batched <method>": one slow
        method's own); "compile": seconds per pass traced the first time (callbacks.work)."""
        return self.meta.get(meta_key("pace", model, kind))

    def record_pace(self, model: str, seconds: float, passes: int, kind: str = "single") -> None:
        if passes <= 0 or seconds <= 0:
            return
        new = seconds / passes
        old = self.pace(model, kind)
        self.meta.set(meta_key("pace", model, kind), new if old is None else 0.5 * old + 0.5 * new)

    def put_record(self, record: dict) -> str:
        token = digest(record)[:24]
        self.meta.set(meta_key("zip", token), record, expire=24 * 3600)
        return token

    def record(self, token: str) -> dict | None:
        return self.meta.get(meta_key("zip", token))
