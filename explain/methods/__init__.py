"""The method catalogue: every method's one declaration (explain.spec.Method), by family.

    METHODS["gradcam"].formula, .paper, .plain, .options, .passes, ...
    OPTIONS["lime_samples"]            # every option, typed and bounded (explain.spec.Option)
    option_owners("seed")              # the methods whose result an option changes

Adding a method is one declaration in its family's module (a gradient CAM: its formula plus
`cams.gradient_cam(...)`); the engine, the app, the CLI and the README read it from here.
"""

from __future__ import annotations

from explain.methods import blackbox, cams, fixations, perturbation, pixel
from explain.spec import SHARED_OPTIONS, Method, Option

METHODS: dict[str, Method] = {m.id: m for family in (cams, pixel, fixations, perturbation, blackbox)
                              for m in family.METHODS}

#: What a fresh page and the CLI explain when no method is named.
DEFAULT_METHODS = ("gradcam",)

OPTIONS: dict[str, Option] = {o.name: o for m in METHODS.values() for o in m.options}
OPTIONS.update((o.name, o) for o in SHARED_OPTIONS)


def option_owners(name: str) -> tuple[str, ...]:
    """The methods whose result option `name` changes (all of them for a name not declared)."""
    owners = tuple(m.id for m in METHODS.values() if name in m.option_names())
    return owners if name in OPTIONS else tuple(METHODS)


def check_options(options: dict, *, page: bool = False) -> dict:
    """Every option, given ones parsed and checked (page: the app's bounds), others at default."""
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        from explain.errors import ExplainError
        raise ExplainError(f"unknown option {unknown[0]!r}; options: {', '.join(OPTIONS)}")
    return {k: (o.parse(options[k], page=page) if k in options else o.default) for k, o in OPTIONS.items()}


def markdown_table() -> str:
    """The README's method table, made from the declarations (a test keeps the README in step):
    `python -c "from explain.methods import markdown_table; print(markdown_table())"`."""
    rows = ["| id | method | in plain words | paper | the map |", "|---|---|---|---|---|"]
    rows += [f"| `{m.id}` | {m.name} | {m.plain} | {m.paper} | {m.formula.replace('|', '&#124;')} |"
             for m in METHODS.values()]
    return "\n".join(rows)


__all__ = ["markdown_table", "METHODS", "DEFAULT_METHODS", "OPTIONS", "Method", "Option", "option_owners", "check_options"]
