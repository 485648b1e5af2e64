"""Every option of a run, a model job and a study, with its default and its range, written once.

The CLI builds its flags from these tables, the runs-sheet check (thinwire/config.py) builds its
schema for the model section and the studies from them, and the workflow (workflow/rules/common.smk)
turns a runs sheet's keys into the same flags. The module imports nothing heavy, so reading a runs
sheet or parsing a command line stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from typing import Any

from thinwire.algorithms.comm import ThinwireError


@dataclasses.dataclass(frozen=True)
class RunDefaults:
    """Defaults of a run, on the command line and in a runs sheet."""

    steps: int = 100
    seed: int = 0
    dtype: str = "float32"
    eval_every: int = 10
    workers: int = 4  # `thinwire sim --workers`
    world_size: int = 2  # a runs-sheet entry's
    collective_timeout_s: float = 120.0  # `thinwire run --timeout`, the runs sheet's collective_timeout_s
    run_timeout_s: float = 900.0  # a whole real run in the workflow


RUN = RunDefaults()
DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: its runs-sheet key, its command-line flag, type, default and range."""

    key: str
    flag: str
    kind: type
    help: str
    default: Any = None
    minimum: float | None = None  # inclusive
    above: float | None = None  # exclusive
    repeat: bool = False  # a list in the runs sheet, a repeatable flag on the command line
    min_items: int = 1
    in_sheet: bool = True  # a runs-sheet key (else only a flag)

    def check(self, value: Any) -> Any:
        """`value` as this option's type, or a ThinwireError naming the flag."""
        if self.kind is bool:
            return bool(value)
        try:
            v = self.kind(value)
        except (TypeError, ValueError):
            raise ThinwireError(f"{self.flag} must be {_KIND[self.kind]}, got {value!r}") from None
        if self.kind in (int, float) and (isinstance(value, bool) or not math.isfinite(v)
                                          or (self.kind is int and float(value) != v)):
            raise ThinwireError(f"{self.flag} must be a finite {_KIND[self.kind]}, got {value!r}")
        if self.minimum is not None and self.minimum >= 1 and v < 1:
            raise ThinwireError(f"{self.flag} must be positive, got {value!r}")
        if self.minimum is not None and v < self.minimum:
            raise ThinwireError(f"{self.key} must be >= {self.minimum:g}, got {value!r}")
        if self.above is not None and v <= self.above:
            raise ThinwireError(f"{self.flag} must be > {self.above:g}, got {value!r}")
        return v

    def schema(self) -> dict:
        """This option as JSON schema (for the runs-sheet check)."""
        one: dict[str, Any] = {"type": _SCHEMA_TYPE[self.kind]}
        if self.minimum is not None:
            one["minimum"] = self.minimum
        if self.above is not None:
            one["exclusiveMinimum"] = self.above
        if self.repeat:
            return {"type": "array", "minItems": self.min_items, "items": one, "description": self.help}
        return {**one, "description": self.help}

    def args(self, value: Any) -> list[str]:
        """The command-line arguments that give this option `value`."""
        if self.kind is bool:
            return [self.flag] if value else []
        values = value if self.repeat else [value]
        if self.repeat and self.flag == "--horizons":  # nargs="+": one flag, several values
            return [self.flag, *map(str, values)]
        return [a for v in values for a in (self.flag, str(v))]


def check_finite(method: str, config: Any) -> None:
    """No method parameter means inf or NaN (and `not lr > 0` lets lr=inf through)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ThinwireError(f"method {method!r}: parameter {f.name!r} must be finite, got {value}")


_KIND = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
_SCHEMA_TYPE = {int: "integer", float: "number", str: "string", bool: "boolean"}

# `thinwire model`'s pricing options; a runs sheet's model section and setups take the same keys.
MODEL_OPTIONS = (  # in the order the workflow has always written them
    Option("name", "--name", str, "name in the cluster column (default: the cluster's own)", in_sheet=False),
    Option("target_params", "--target-params", float, "scale bytes to a model of this many parameters", above=0),
    Option("flops_per_step", "--flops-per-step", float, "compute per worker per step of the target model",
           minimum=0),
    Option("tokens_per_step", "--tokens-per-step", float,
           "transformer tokens per worker per step: compute 6 x params x tokens, unless --flops-per-step", above=0),
    Option("buckets", "--buckets", int, "gradient buckets for --overlap (default: DDP's 25 MiB)", minimum=1),
    Option("baseline", "--baseline", str, "method or label of the dense baseline (default sgd)", default="sgd"),
    Option("target_loss_factor", "--target-loss-factor", float,
           "time to target: reach this times the baseline's final loss (default 1.05)", default=1.05, minimum=1),
    Option("bandwidths_gbps", "--bandwidth", float, "inter-node Gbit/s to sweep, repeatable", above=0, repeat=True),
    Option("speedups", "--speedup", float, "find the bandwidth below which a run beats its baseline by this "
           "factor, repeatable (default 1: the break-even bandwidth)", above=0, repeat=True),
    Option("overlap", "--overlap", bool, "overlap communication with the backward pass", default=False),
    Option("target_shapes", "--target-shapes", str, "scale bytes to a model's own tensors (a shapes workload: "
           "resnet50, alexnet, ...) by the method's bits formula on them; instead of --target-params"),
)


@dataclasses.dataclass(frozen=True)
class Study:
    """A measurement that is not a training run: its function, what it measures and the options it takes
    (`rename` maps an option to the function's own argument name)."""

    module: str
    help: str
    options: tuple[str, ...]
    rename: tuple[tuple[str, str], ...] = ()

    @property
    def run(self) -> Callable[..., Any]:
        return importlib.import_module(self.module).run_study


STUDY_OPTIONS = {o.key: o for o in (
    Option("seed", "--seed", int, "quantizers: seed of the data and the draws (default 0)", minimum=0,
           in_sheet=False),
    Option("seeds", "--seeds", int, "sign_rate, zo_rate: seeds per horizon (default 3)", minimum=1),
    Option("draws", "--draws", int, "quantizers: draws per quantizer and distribution (default 20)", minimum=3),
    Option("horizons", "--horizons", int, "sign_rate, zo_rate: the horizons T (default sign_rate 100 ... 1600, "
           "zo_rate 50 ... 800; at least 2: a rate is a slope)", minimum=1, repeat=True, min_items=2),
)}

# The study registry: `thinwire study NAME`, a runs sheet's `studies:` and the workflow's study jobs.
STUDIES = {
    "quantizers": Study("thinwire.simulators.quantizer_study", "error of every quantizer by distribution",
                        ("seed", "draws")),
    "sign_rate": Study("thinwire.simulators.sign_rate_study",
                       "DSM-LS's gradient norm against the horizon (claim S3)", ("seeds", "horizons"),
                       (("horizons", "rounds"),)),  # DSM-LS's horizon is its number of global rounds
    "sign_rate_confirm": Study("thinwire.simulators.sign_rate_confirm",
                               "S3's confirmatory rate check: fixed seeds 10-14 and horizons 125 ... 2000, no options",
                               ()),
    "zo_rate": Study("thinwire.simulators.zo_rate_study",
                     "zeroth-order proximal methods' gradient mapping against the horizon (ZO-1..3)",
                     ("seeds", "horizons")),
}


def study_kwargs(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The checked keyword arguments of study `name`'s function from its options `given` (None: unset)."""
    study = STUDIES[name]
    given = {k: v for k, v in given.items() if v is not None}
    wrong = sorted(set(given) - set(study.options))
    if wrong:
        takes = ", ".join(sorted(STUDY_OPTIONS[o].flag for o in study.options)) or "no options"
        raise ThinwireError(f"study {name} takes {takes}, "
                            f"not {', '.join(STUDY_OPTIONS[w].flag if w in STUDY_OPTIONS else w for w in wrong)}")
    out: dict[str, Any] = {}
    for key, value in given.items():
        option = STUDY_OPTIONS[key]
        if option.repeat:
            if not isinstance(value, list | tuple) or len(value) < option.min_items:
                raise ThinwireError(f"study {name} {option.flag} needs at least {option.min_items} {key}")
            out[key] = tuple(option.check(v) for v in value)
        else:
            out[key] = option.check(value)
    renamed = dict(study.rename)
    return {renamed.get(k, k): v for k, v in out.items()}


def studies_schema() -> dict:
    """JSON schema of a runs sheet's `studies:` entry: a registered name, or a name with its options."""
    names = sorted(STUDIES)
    return {"oneOf": [{"enum": names}, {
        "type": "object", "additionalProperties": False, "required": ["name"],
        "properties": {"name": {"enum": names},
                       **{k: o.schema() for k, o in STUDY_OPTIONS.items() if o.in_sheet}}}]}


def pricing_schema() -> dict:
    """JSON schema properties of the model section's pricing keys (MODEL_OPTIONS)."""
    return {o.key: o.schema() for o in MODEL_OPTIONS if o.in_sheet}
