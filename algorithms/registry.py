"""The method registry, and turning user-given parameters into a validated method config."""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import typing
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

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


class MethodBase:
    """What every method keeps: its validated config and the layout of the parameters it updates."""

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


def _load_all() -> None:
    """Import every module of this package: a method module registers its class when imported, so a
    new method is one new file."""
    import thinwire.algorithms as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def make_config(method: type, params: dict[str, Any]) -> Any:
    """Build `method.Config` from user params, naming any unknown key or mistyped value."""
    fields = {f.name: f for f in dataclasses.fields(method.Config)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ThinwireError(f"method {method.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                            f"its parameters: {', '.join(fields)}")
    hints = typing.get_type_hints(method.Config)
    typed = {k: _coerce(method.name, k, v, hints[k]) for k, v in params.items()}
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
