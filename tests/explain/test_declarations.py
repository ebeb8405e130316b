"""A method is declared once: everything else reads the declaration (explain.spec, explain.methods)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from explain.methods import METHODS, OPTIONS, check_options, option_owners
from explain.errors import ExplainError

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_explain_imports_nothing_above_it():
    for path in (ROOT / "explain").rglob("*.py"):
        assert not _imports(path) & {"models", "callbacks", "layouts", "dash", "app"}, path
    # and importing every module of it loads none of them
    code = ("import importlib, pkgutil, sys, explain, explain.methods\n"
            "mods = [m.name for m in pkgutil.walk_packages(explain.__path__, 'explain.') if m.name != 'explain.__main__']\n"
            "[importlib.import_module(m) for m in mods]\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('models', 'callbacks', 'layouts', 'dash'))\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_method_id_is_written_in_the_app():
    """callbacks/ and layouts/ read the declarations; a method id as a string literal there would be a
    second place where a fact about that method lives."""
    for folder in ("callbacks", "layouts"):
        for path in (ROOT / folder).rglob("*.py"):
            strings = {n.value for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                       if isinstance(n, ast.Constant) and isinstance(n.value, str)}
            assert not strings & set(METHODS), (path, strings & set(METHODS))


def test_declarations_are_complete_and_consistent():
    for m in METHODS.values():
        assert m.name and m.plain and m.paper and m.formula, m.id
        assert m.family in ("cam", "pixel", "perturbation"), m.id
        assert m.passes or m.units, f"{m.id} declares no cost"
        if not m.needs_target:
            assert not m.counterfactual, f"{m.id}: a class-agnostic map cannot be counterfactual"
        for o in m.options:
            assert option_owners(o.name) == (m.id,), o.name
            assert o.name in OPTIONS and o.description
            if o.choices:
                assert o.default in o.choices, o.name
    assert option_owners("no-such-option") == tuple(METHODS)


def test_option_values_are_typed_and_bounded():
    opts = check_options({"smoothgrad_samples": "40", "smoothgrad_noise": "0.2", "occlusion_patch": None})
    assert opts["smoothgrad_samples"] == 40 and opts["smoothgrad_noise"] == pytest.approx(0.2)
    assert opts["occlusion_patch"] is None and opts["seed"] == OPTIONS["seed"].default
    for bad, message in [({"ig_steps": 2.5}, "whole number"), ({"ig_steps": 0}, "at least 1"),
                         ({"smoothgrad_noise": "nan"}, "finite"), ({"lime_samples": True}, "number"),
                         ({"colour": 1}, "unknown option")]:
        with pytest.raises(ExplainError, match=message):
            check_options(bad)
    with pytest.raises(ExplainError, match="at most 200"):
        check_options({"smoothgrad_samples": 201}, page=True)
    with pytest.raises(ExplainError, match="one of"):
        check_options({"occlusion_fill": "purple"}, page=True)
    assert check_options({"smoothgrad_samples": 201})["smoothgrad_samples"] == 201   # scripts may


def test_readme_method_table_is_made_from_the_declarations():
    from explain.methods import markdown_table

    assert markdown_table() in (ROOT / "README.md").read_text(encoding="utf-8"), \
        "README's method table is stale: paste markdown_table()'s output"


def test_a_one_off_set_up_runs_once_per_process_and_again_after_a_failure():
    """explain.spec.Setup: a method's library preparation (SHAP's numba compile), run by warmup()
    and explain() before the method; concurrent first runs prepare once."""
    import threading
    import time

    from explain.spec import Setup

    calls = []
    setup = Setup(lambda: (time.sleep(0.05), calls.append(1)), typical=1.0)
    threads = [threading.Thread(target=setup) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and setup.done

    tries = []

    def fail():
        tries.append(1)
        raise ExplainError("the library is missing")
    failing = Setup(fail, typical=1.0)
    for _ in range(2):
        with pytest.raises(ExplainError):
            failing()
    assert tries == [1, 1] and not failing.done
    assert [m for m, d in METHODS.items() if d.setup is not None] == ["shap"]
