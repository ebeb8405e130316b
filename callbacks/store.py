"""Server-side state: uploads, computed heatmaps and counters, in size-bounded disk caches.

Nothing a user uploads lives in a Python global or in the browser: an upload is decoded once and
kept under its content hash (SHA-256 of the file), so two people only ever reach an image whose
bytes they already have. Heatmaps are kept under a key of everything that determines them (image,
model, layer, method, target, score, counterfactual, that method's options), so changing the
display (colormap, opacity, view, scale) re-draws from the cache and never re-runs a model.
diskcache is process- and thread-safe, so gunicorn workers and background jobs share it. With
CAMLENS_REDIS_URL the same caches live in Redis instead (`RedisCache`), so Celery workers on other
machines read the uploads and write heatmaps where the web server finds them.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import logging
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
        self.uploads = diskcache.Cache(str(root / "uploads"), size_limit=uploads_mb * 2**20,
                                       eviction_policy=policy)
        self.results = diskcache.Cache(str(root / "results"), size_limit=results_mb * 2**20,
                                       eviction_policy=policy)
        self.meta = diskcache.Cache(str(root / "meta"), size_limit=64 * 2**20)

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
        self.meta.incr(("count", name), by, default=0)

    def counts(self) -> dict[str, int]:
        read = self.meta.count if isinstance(self.meta, RedisCache) else (lambda k: int(self.meta.get(k, 0)))
        return {k[1]: read(k) for k in list(self.meta.iterkeys()) if isinstance(k, tuple) and k[0] == "count"}

    def pace(self, model: str, kind: str = "single") -> float | None:
        """Seconds per model pass last measured on `model` (a running mean), for cost estimates.
        kind "single": one image per call (predictions, gradient methods); "batched": the slow
        methods' batched passes, several times cheaper per image."""
        return self.meta.get(("pace", model, kind))

    def record_pace(self, model: str, seconds: float, passes: int, kind: str = "single") -> None:
        if passes <= 0 or seconds <= 0:
            return
        new = seconds / passes
        old = self.pace(model, kind)
        self.meta.set(("pace", model, kind), new if old is None else 0.5 * old + 0.5 * new)

    def put_record(self, record: dict) -> str:
        token = digest(record)[:24]
        self.meta.set(("zip", token), record, expire=24 * 3600)
        return token

    def record(self, token: str) -> dict | None:
        return self.meta.get(("zip", token))
