"""The server's caches read back nothing that runs code, and heal themselves when damaged."""
import logging
import pickle
import sqlite3

import numpy as np
import pytest

from callbacks.store import HealingCache, Store, meta_key


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


def test_values_round_trip_without_pickle(store, tmp_path):
    entry = {"method": "m", "heatmap": np.arange(6, dtype=np.float32).reshape(2, 3), "seconds": 0.5,
             "warnings": ["w"], "extra": {"channels": [1, 2], "maps": np.ones((2, 2, 2), np.float32)}}
    store.put("res:1", entry)
    back = store.get("res:1")
    np.testing.assert_array_equal(back["heatmap"], entry["heatmap"])
    assert back["extra"]["channels"] == [1, 2] and back["seconds"] == pytest.approx(0.5)
    store.count("explain")
    store.count("explain", 2)
    assert store.counts() == {"explain": 3}
    store.record_pace("m", 2.0, 4)
    assert store.pace("m") == pytest.approx(0.5)
    # no row of the database holds a pickle
    rows = sqlite3.connect(tmp_path / "store" / "results" / "cache.db").execute(
        "SELECT mode FROM Cache").fetchall()
    assert rows and all(mode != 4 for (mode,) in rows)   # diskcache's MODE_PICKLE is 4


class _Boom:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_a_planted_pickle_is_refused_and_dropped(store, tmp_path, monkeypatch, caplog):
    """A value written into the cache by anything but camlens (here: a pickle that would run code)
    is never loaded: the read is a miss, the row is deleted, one warning is logged."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "store" / "results" / "cache.db"
    store.put("res:evil", {"ok": 1})
    con = sqlite3.connect(db)
    con.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = 'res:evil'", (pickle.dumps(_Boom()),))
    con.commit()
    with caplog.at_level(logging.WARNING, logger="camlens.store"):
        assert store.get("res:evil") is None
    assert not (tmp_path / "PWNED").exists()
    assert "unreadable value" in caplog.text
    assert store.get("res:evil") is None and store.results.cache.get("res:evil") is None   # deleted


def test_random_bytes_in_a_value_are_dropped_and_recomputed(store, tmp_path):
    store.put("res:big", {"heatmap": np.random.default_rng(0).random((300, 300)).astype(np.float32)})
    files = [p for p in (tmp_path / "store" / "results").rglob("*.val")]
    assert files, "a large value lives in its own file"
    files[0].write_bytes(np.random.default_rng(1).bytes(5000))
    assert store.get("res:big") is None
    store.put("res:big", {"heatmap": np.zeros((2, 2), np.float32)})   # recomputed, kept again
    assert store.get("res:big")["heatmap"].shape == (2, 2)


def test_a_damaged_index_is_moved_aside_and_rebuilt(tmp_path, caplog):
    root = tmp_path / "store"
    Store(root).put("res:x", {"v": 1})
    (root / "results" / "cache.db").write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="camlens.store"):
        store = Store(root)
        assert store.get("res:x") is None    # gone with the damaged index, to be recomputed
        store.put("res:x", {"v": 2})
        assert store.get("res:x") == {"v": 2}
    assert "damaged" in caplog.text
    assert any(p.name.startswith("results.damaged-") for p in root.iterdir())


def test_an_index_damaged_while_running_heals_on_the_next_use(tmp_path):
    cache = HealingCache(tmp_path / "c", size_limit=2**20)
    cache.set(meta_key("pace", "m", "single"), 0.25)
    cache.cache.close()
    (tmp_path / "c" / "cache.db").write_bytes(b"\0" * 4096)
    assert cache.get(meta_key("pace", "m", "single")) is None
    cache.set("k", {"a": [1, 2]})
    assert cache.get("k") == {"a": [1, 2]}


def test_keys_must_be_strings(tmp_path):
    cache = HealingCache(tmp_path / "c")
    with pytest.raises(TypeError):
        cache.set(("a", "tuple"), 1)


def test_the_job_cache_is_a_healing_cache_that_keeps_dash_values_as_json(tmp_path, caplog):
    """The background jobs' cache (callbacks.jobs.JobCache) reuses HealingCache: Dash's values
    (tuples, no_update) come back as plain JSON, and a damaged index is moved aside and rebuilt."""
    import dash

    from callbacks.jobs import JobCache

    cache = JobCache(tmp_path / "jobs")
    cache.set("r", ({"at": 1.0}, dash.no_update))
    assert cache.get("r") == [{"at": 1.0}, {"_dash_no_update": "_dash_no_update"}]
    assert cache.delete("r") and cache.get("r") is None
    cache.cache.close()
    (tmp_path / "jobs" / "cache.db").write_bytes(b"not a database" * 300)
    with caplog.at_level(logging.WARNING, logger="camlens.store"):
        cache = JobCache(tmp_path / "jobs")
        cache.set("r", [1, "two"])
        assert cache.get("r") == [1, "two"]
    assert "damaged" in caplog.text
