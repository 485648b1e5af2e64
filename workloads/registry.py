"""Every workload by name: the simulator's convex problems and the torch models."""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Any

from thinwire.algorithms.comm import ThinwireError
from thinwire.simulators.problems import PROBLEMS, ProblemConfig


def _shapes(model: str):
    from thinwire.workloads.shapes import ShapesConfig, ShapesWorkload

    return functools.partial(ShapesWorkload, model), ShapesConfig


def _digits(model: str):
    from thinwire.workloads.digits import DigitsConfig, DigitsWorkload

    return functools.partial(DigitsWorkload, model), DigitsConfig


def _text(model: str):
    from thinwire.workloads.text import GPTConfig, LSTMConfig, TextWorkload

    return functools.partial(TextWorkload, model), {"lstm": LSTMConfig, "gpt": GPTConfig}[model]


# name -> (kind shown by `thinwire list`, loader returning (class, config class))
WORKLOADS: dict[str, tuple[str, Any]] = {
    **{name: ("problem", (lambda cls=cls: (cls, ProblemConfig))) for name, cls in PROBLEMS.items()},
    "digits-mlp": ("workload", lambda: _digits("mlp")),
    "digits-cnn": ("workload", lambda: _digits("cnn")),
    "text-lstm": ("workload", lambda: _text("lstm")),
    "text-gpt": ("workload", lambda: _text("gpt")),
    "resnet50-shapes": ("shapes", lambda: _shapes("resnet50")),
    "alexnet-shapes": ("shapes", lambda: _shapes("alexnet")),
    "ptb-lstm-shapes": ("shapes", lambda: _shapes("ptb-lstm")),
    "deepspeech-shapes": ("shapes", lambda: _shapes("deepspeech")),
}


def per_example_workloads() -> list[str]:
    """The workloads whose oracle also gives per-example gradients (`per_example`; CLARS needs them):
    those whose class has `per_example_grads`."""
    classes = {name: load()[0] for name, (_, load) in WORKLOADS.items()}
    return sorted(name for name, cls in classes.items() if hasattr(getattr(cls, "func", cls), "per_example_grads"))


def make_workload(name: str, world_size: int, seed: int, params: dict[str, Any] | None = None) -> Any:
    if name not in WORKLOADS:
        raise ThinwireError(f"unknown workload {name!r}; known workloads: {', '.join(sorted(WORKLOADS))}")
    cls, config_cls = WORKLOADS[name][1]()
    params = dict(params or {})
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ThinwireError(f"workload {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                            f"its parameters: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(config_cls)
    for key, value in params.items():  # numbers are numbers: `dim=abc` and `dim=10.5` name the parameter
        kind = hints.get(key)
        if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)
                                     or not math.isfinite(value) or (kind is int and value != int(value))):
            raise ThinwireError(f"workload {name!r}: parameter {key!r} must be "
                                f"{'an integer' if kind is int else 'a finite number'}, got {value!r}")
        if kind is int:
            params[key] = int(value)
    try:
        return cls(world_size, seed, config_cls(**params))
    except (TypeError, ValueError) as e:
        raise ThinwireError(f"workload {name!r}: {e}") from None


def epochs_per_step(name: str, world_size: int, params: dict[str, Any] | None = None) -> float | None:
    """Epochs over its training data one step of the workload draws, from the run's own setup (its meta's
    world_size and workload_params); None for the other workloads, whose epochs no claim reads."""
    if not name.startswith("digits-"):
        return None
    from thinwire.workloads.digits import DigitsConfig
    from thinwire.workloads.digits import epochs_per_step as digits_epochs

    return digits_epochs(world_size, DigitsConfig(**(params or {})))
