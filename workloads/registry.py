"""Every workload by name: the simulator's convex problems and the torch models."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from thinwire.algorithms.comm import ThinwireError
from thinwire.simulators.problems import PROBLEMS, ProblemConfig


def _shapes(model: str):
    from thinwire.workloads.shapes import ShapesConfig, ShapesWorkload

    return functools.partial(ShapesWorkload, model), ShapesConfig


def _digits(model: str):
    from thinwire.workloads.digits import DigitsConfig, DigitsWorkload

    return functools.partial(DigitsWorkload, model), DigitsConfig


# name -> (kind shown by `thinwire list`, loader returning (class, config class))
WORKLOADS: dict[str, tuple[str, Any]] = {
    **{name: ("problem", (lambda cls=cls: (cls, ProblemConfig))) for name, cls in PROBLEMS.items()},
    "digits-mlp": ("workload", lambda: _digits("mlp")),
    "digits-cnn": ("workload", lambda: _digits("cnn")),
    "resnet50-shapes": ("shapes", lambda: _shapes("resnet50")),
    "alexnet-shapes": ("shapes", lambda: _shapes("alexnet")),
    "ptb-lstm-shapes": ("shapes", lambda: _shapes("ptb-lstm")),
}


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
    try:
        return cls(world_size, seed, config_cls(**params))
    except (TypeError, ValueError) as e:
        raise ThinwireError(f"workload {name!r}: {e}") from None
