"""The method registry, and turning user-given parameters into a validated method config."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import pkgutil
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
from thinwire.algorithms.comm import Communicator, ThinwireError


class Oracle(Protocol):
    """A worker's stochastic first-order oracle: returns (loss per worker, gradient) at x."""

    def __call__(self, x: Any) -> tuple[Any, Any]: ...


# The parameter tensors behind the flat vector a method updates: (name, shape) in order. Methods that
# work per tensor (DGC sparsifies matrices but sends biases dense; LARS takes per-layer norms) read it.
Layout = tuple[tuple[str, tuple[int, ...]], ...]


class Segment(NamedTuple):
    name: str
    start: int
    stop: int
    shape: tuple[int, ...]


def segments(layout: Layout) -> list[Segment]:
    out, start = [], 0
    for name, shape in layout:
        size = math.prod(shape)
        out.append(Segment(name, start, start + size, tuple(shape)))
        start += size
    return out


def check_step(lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
    """The checks every SGD-like config shares; a ValueError names the parameter."""
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")


def is_period_end(step: int, period: int) -> bool:
    """Whether 0-based `step` ends a period of `period` steps: the papers' code counts steps from 1 and
    acts when the counter reaches the period ((t + 1) % period == 0), i.e. at steps period-1, 2 period-1, ..."""
    return (step + 1) % period == 0


def check_density(density: float) -> None:
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")


# The modes every method is checked in (tests/test_conformance.py): the simulator, and real ranks under
# torch.distributed (gloo) and MPI.
MODES = ("sim", "gloo", "mpi")


class MethodBase:
    """What every method keeps: its validated config and the layout of the parameters it updates."""

    # Modes (of MODES) this method cannot run in, each with the reason; conformance reports it as a skip.
    unsupported_modes: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any, layout: Layout) -> None:
        self.config = config
        self.layout = layout
        self.n_params = sum(math.prod(shape) for _, shape in layout)

    def diagnostics(self, state: dict[str, Any]) -> dict[str, float]:
        """Scalars the method measured about itself over the run (e.g. DGC's update intervals)."""
        return {}

    def trace(self, state: dict[str, Any]) -> dict[str, float]:
        """Scalars of the step just taken, recorded every step (trace.csv; e.g. LARS' per-layer lr).
        Keep them few: each name becomes a column of the results table."""
        return {}

    def stated_bits(self, value_bits: int, step: int, state: dict[str, Any]) -> float:
        """The stated bits per parameter of the step just taken, given the state after it: the formula
        of bits_per_parameter, unless the message size depends on the step's data (DGC's sampled
        threshold): such a method applies its formula to what it selected, which its state keeps."""
        return self.bits_per_parameter(value_bits, step)


class Method(Protocol):
    """One method: a config dataclass, its state, and one step of SPMD code for one worker."""

    name: str
    Config: type
    n_params: int
    # Parameters under which the method does something non-trivial on a 50-parameter problem in 20
    # steps (compresses, warms up, ...): every conformance test runs the method with them.
    tiny: dict[str, Any]
    # Modes it cannot run in -> why (MethodBase: none).
    unsupported_modes: dict[str, str]

    def __init__(self, config: Any, layout: Layout) -> None: ...

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]: ...

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle,
             comm: Communicator) -> tuple[Any, dict[str, Any], Any]:
        """Advance one step; return (new x, new state, loss per worker at the old x)."""

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        """The method's stated bits sent per rank per parameter at `step` (a formula, not a measurement)."""

    def stated_bits(self, value_bits: int, step: int, state: dict[str, Any]) -> float:
        """What the training loop records as the step's stated bits (MethodBase: bits_per_parameter)."""


METHODS: dict[str, type] = {}


def register(cls: type) -> type:
    known = METHODS.get(cls.name)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ThinwireError(f"method name {cls.name!r} is taken by {known.__module__}.{known.__qualname__}")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type:
    _load_all()
    if name not in METHODS:
        raise ThinwireError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_names() -> list[str]:
    _load_all()
    return sorted(METHODS)


# Methods kept outside this package: files or folders of them, separated by os.pathsep (":" on Linux).
PLUGIN_ENV = "THINWIRE_METHODS"


def _load_all() -> None:
    """Import every module of this package, then every file $THINWIRE_METHODS names: a method module
    registers its class when imported, so a new method is one new file, here or in a folder of your own."""
    import thinwire.algorithms as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    for entry in filter(None, os.environ.get(PLUGIN_ENV, "").split(os.pathsep)):
        path = Path(entry)
        if not path.exists():
            raise ThinwireError(f"{PLUGIN_ENV} names {entry!r}, which does not exist")
        for file in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            _load_plugin(file)


def _load_plugin(file: Path) -> None:
    """Import one method file from outside the package, once, as module thinwire_methods.<its stem>."""
    name = f"thinwire_methods.{file.stem}"
    if name in sys.modules:
        if Path(sys.modules[name].__file__ or "").resolve() != file.resolve():
            raise ThinwireError(f"{PLUGIN_ENV}: two method files are named {file.name!r}; rename one")
        return
    spec = importlib.util.spec_from_file_location(name, file)
    if file.suffix != ".py" or spec is None or spec.loader is None:
        raise ThinwireError(f"{PLUGIN_ENV} names {str(file)!r}, which is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ThinwireError(f"method file {file} (from {PLUGIN_ENV}) failed to import: {type(e).__name__}: {e}") from e


# Tags the method's stream apart from the workload's (seeded by the run seed itself): "thinwire-method".
METHOD_STREAM = int.from_bytes(b"tw-meth", "big")


def method_seed(run_seed: int) -> int:
    """The seed of a method's random streams (CSER's blocks, stochastic rounding, DGC's sampling, ZO's
    directions, ...) in the run seeded `run_seed`: a stable hash of (run_seed, METHOD_STREAM), the same
    in every mode and for every method of the run (common random numbers across a comparison's arms),
    and different for every run seed, so seed-to-seed spread includes the method's own randomness."""
    if run_seed < 0:
        raise ThinwireError(f"seed must be >= 0, got {run_seed}")
    return int(np.random.SeedSequence([run_seed, METHOD_STREAM]).generate_state(1)[0])


def make_config(method: type, params: dict[str, Any], run_seed: int | None = None) -> Any:
    """Build `method.Config` from user params, naming any unknown key or mistyped value. With `run_seed`
    (every run does), a method's `seed` is method_seed(run_seed), and a `seed` among the params is refused:
    it would fix the method's randomness across the run's seeds and hide it from their error bars."""
    fields = {f.name: f for f in dataclasses.fields(method.Config)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ThinwireError(f"method {method.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                            f"its parameters: {', '.join(fields)}")
    if run_seed is not None and "seed" in params:
        raise ThinwireError(f"method {method.name!r}: parameter 'seed' cannot be set: the method's random streams "
                            f"derive from the run's seed (--seed, or the sheet's seeds)")
    hints = typing.get_type_hints(method.Config)
    typed = {k: _coerce(method.name, k, v, hints[k]) for k, v in params.items()}
    if run_seed is not None and "seed" in fields:
        typed["seed"] = method_seed(run_seed)
    try:
        return method.Config(**typed)
    except (TypeError, ValueError) as e:
        raise ThinwireError(f"method {method.name!r}: {e}") from None


def _coerce(method: str, key: str, value: Any, kind: Any) -> Any:
    convert: Callable[[Any], Any] = {float: float, int: int, bool: _to_bool, str: str}.get(kind, lambda v: v)
    if kind in (int, float) and isinstance(value, bool):
        raise ThinwireError(f"method {method!r}: parameter {key!r} must be a number, got {value!r}")
    try:
        out = convert(value)
    except (TypeError, ValueError):
        raise ThinwireError(f"method {method!r}: parameter {key!r} must be {kind.__name__}, got {value!r}") from None
    if kind is int and float(value) != out:
        raise ThinwireError(f"method {method!r}: parameter {key!r} must be an integer, got {value!r}")
    return out


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if str(v).lower() in ("true", "1", "yes"):
        return True
    if str(v).lower() in ("false", "0", "no"):
        return False
    raise ValueError(v)
