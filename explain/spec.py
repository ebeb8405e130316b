"""What a method is, declared once: `Method` (id, words, paper, passes, cost, options, flags),
`Option` (a typed, bounded method option) and `Score` (what the explained number is).

Everything else reads these declarations: the engine's planning, warm-up and warnings, the app's
cache keys, option widgets, captions and method list, the CLI's help and the README's table.
The catalogue itself is `explain.methods`.
"""

from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass, field
from typing import Callable

from explain.errors import ExplainError

#: Shared passes a method can ask for (explain.passes): "cam" forward + backward to the layer
#: (A, G), "acts" the layer's activations (taken from "cam" when that runs anyway, else a forward
#: tap), "grad" / "guided" forward + backward to the input, "forward" the clean image's outputs.
PASSES = ("cam", "acts", "grad", "guided", "forward")


@dataclass(frozen=True)
class Option:
    """A method option: `kind` int, float or str; None allowed only when the default is None.

    lo: smallest value (the engine refuses less). page_max: the most a visitor of the app may ask
    for (memory and time bounds of a shared server; scripts may ask for more). choices: the only
    values a str option takes in the app (scripts may pass others the method documents)."""

    name: str
    default: object
    description: str
    kind: type = int
    lo: float = 0
    page_max: float | None = None
    choices: tuple[str, ...] = ()
    shown: bool = True

    def parse(self, value, *, page: bool = False):
        """`value` as this option's type, checked; raises ExplainError with a one-line reason."""
        if value is None or (isinstance(value, str) and value.strip() == "" and self.kind is not str):
            if self.default is None:
                return None
            raise ExplainError(f"option {self.name} needs a value")
        if self.kind is str:
            value = value if not isinstance(value, str) else value.strip()
            if page and self.choices and value not in self.choices:
                raise ExplainError(f"option {self.name} must be one of {', '.join(self.choices)}, "
                                   f"not {value!r}")
            return value
        if isinstance(value, bool):
            raise ExplainError(f"option {self.name} must be a number, not {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ExplainError(f"option {self.name} must be a number, not {value!r}") from None
        if not math.isfinite(number):
            raise ExplainError(f"option {self.name} must be a finite number, not {value!r}")
        if self.kind is int:
            if number != int(number):
                raise ExplainError(f"option {self.name} must be a whole number, not {value!r}")
            number = int(number)
        if number < self.lo:
            raise ExplainError(f"option {self.name} must be at least {self.lo:g}")
        if page and self.page_max is not None and number > self.page_max:
            raise ExplainError(f"option {self.name} can be at most {self.page_max:g} here")
        return number


@dataclass(frozen=True)
class Score:
    """The number a method explains: `kind` "logit" (pre-softmax, the Grad-CAM paper's choice) or
    "probability"; `target` the class (None: the top-1 class); `contrast` another class B, so the
    score is S_target - S_B ("why A rather than B"); `counterfactual` asks the CAM family for the
    evidence against the target (negated gradients / weights, Selvaraju et al. 2017, sec. 5)."""

    kind: str = "logit"
    target: int | None = None
    contrast: int | None = None
    counterfactual: bool = False

    def checked(self, num_classes: int) -> "Score":
        if self.kind not in ("logit", "probability"):
            raise ExplainError(f"score must be 'logit' or 'probability', not {self.kind!r}")
        for name in ("target", "contrast"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                    or not 0 <= int(value) < num_classes:
                raise ExplainError(f"{name} must be a class index from 0 to {num_classes - 1}")
        target = None if self.target is None else int(self.target)
        contrast = None if self.contrast is None else int(self.contrast)
        if contrast is not None and contrast == target:
            raise ExplainError("contrast must be another class than the target")
        return Score(self.kind, target, contrast, bool(self.counterfactual))


#: Options of the run rather than of one method: `uses` in a declaration says which change it.
SHARED_OPTIONS = (
    Option("batch_size", 16, "Images per batched model call (perturbation, black-box, SmoothGrad, IG).",
           lo=1, page_max=64, shown=False),
    Option("seed", 0, "Random seed (SmoothGrad noise, noise baselines, LIME/RISE/expected-gradients "
                      "samples, SHAP tie-breaks).", shown=False),
)


class Setup:
    """A method's one-off preparation in a process, apart from its model passes (SHAP: numba
    compiles the shap library's code on its first use). Explainer.warmup and explain() run it
    before the method, so it is timed as a compile and not as the method's own pace (which
    once made the second SHAP estimate 5x too long). `typical`: seconds it took on the 2-core
    test machine, the app's estimate until it has measured one."""

    def __init__(self, prepare: Callable[[], None], typical: float):
        self._prepare, self.typical = prepare, typical
        self._lock = threading.Lock()
        self.done = False

    def __call__(self) -> None:
        with self._lock:
            if not self.done:
                self._prepare()
                self.done = True


@dataclass(frozen=True)
class Method:
    """One explanation method. `compute(run)` returns (raw map, normalisation mode, extra):
    mode "relu" (positive evidence), "abs" (already non-negative) or "minmax" (no natural zero);
    extra may hold "warnings". `units(ex, opts, layer)` is the model evaluations it adds beyond the
    shared `passes` (its cost model). `fuses`: given several layers, the engine computes its map at
    each and fuses them (explain.formulas.fuse); a method without it takes one layer only."""

    id: str
    name: str
    plain: str                   # one line a non-expert can read
    paper: str                   # authors, year, title
    formula: str                 # the map, in one line
    family: str                  # "cam" | "pixel" | "perturbation"
    compute: Callable = field(repr=False, compare=False)
    passes: tuple[str, ...] = ()
    traces: tuple[str, ...] = ()  # pass kinds its own evaluations run through (warm-up traces them)
    units: Callable | None = field(default=None, repr=False, compare=False)
    options: tuple[Option, ...] = ()
    uses: tuple[str, ...] = ()   # shared options (SHARED_OPTIONS) that change its result
    needs_layer: bool = False
    needs_target: bool = True    # False: class-agnostic (no score, target, contrast)
    counterfactual: bool = False  # honours Score.counterfactual
    signed: bool = False         # its raw map has a meaningful sign (evidence for and against)
    scale_group: str | None = None  # maps of one group share units, so a shared scale is fair
    slow: bool = False           # runs as a background job in the app
    layer_of: Callable | None = field(default=None, repr=False, compare=False)  # (ex, layer, given)
    fuses: bool = False          # several layers: one map per layer, fused (formulas.fuse); else one
    setup: Setup | None = field(default=None, repr=False, compare=False)   # one-off, per process

    def __post_init__(self):
        unknown = set(self.passes) - set(PASSES) | set(self.traces) - {"grad", "blend", "ablate"}
        if unknown:
            raise ValueError(f"{self.id}: unknown passes {sorted(unknown)}")

    def option_names(self) -> tuple[str, ...]:
        """Every option that changes this method's result."""
        return tuple(o.name for o in self.options) + self.uses
