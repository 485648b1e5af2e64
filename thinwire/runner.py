"""The training loop every mode shares: run a method for N steps, record loss, bytes and time.

The simulator and the real backends differ only in the Communicator and the oracle they pass in,
so a method's trajectory in the simulator and under gloo/MPI comes from the same lines of code.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from thinwire.algorithms import wire
from thinwire.algorithms.comm import Communicator


@dataclasses.dataclass
class Trajectory:
    rows: list[tuple] = dataclasses.field(default_factory=list)  # one per step, see COLUMNS
    wall: list[tuple] = dataclasses.field(default_factory=list)  # (step, seconds, seconds in collectives)
    status: str = "ok"
    message: str = ""
    params: np.ndarray | None = None  # the workers' average model after the last step
    diagnostics: dict[str, float] = dataclasses.field(default_factory=dict)  # the method's, at the end
    trace: list[tuple] = dataclasses.field(default_factory=list)  # (step, name, value): the method's, per step

    COLUMNS = ("step", "loss", "eval_loss", "metric", "bytes_sent", "bytes_recv", "stated_bits")


def to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def worker_mean(x: Any, comm: Communicator, simulated: bool) -> np.ndarray:
    """The average of the workers' models, as numpy (what the papers evaluate for local methods)."""
    if simulated:
        return to_numpy(x).mean(axis=0)
    return to_numpy(comm.all_reduce(x, op="avg", category="metrics"))


def train(method: Any, x: Any, oracle: Any, comm: Communicator, workload: Any, steps: int, *,
          simulated: bool, eval_every: int = 10, progress: bool = True, fail_at: Any = None) -> Trajectory:
    """Run `steps` steps; stop early, status "diverged", when the loss stops being finite."""
    traj = Trajectory()
    state = method.init_state(x, comm)
    bar = tqdm(range(steps), disable=not progress, desc=method.name, unit="step", mininterval=0.5)
    # Overflow on the way to a non-finite loss is what "diverged" records; numpy need not warn too.
    with np.errstate(over="ignore", invalid="ignore"):
        _loop(method, x, state, oracle, comm, workload, steps, simulated, eval_every, fail_at, bar, traj)
    bar.close()
    return traj


def diverged(loss: float, eval_loss: float, step: int) -> str:
    """Why a run stopped: the quantity that stopped being finite, with its value."""
    what, value = ("loss", loss) if not math.isfinite(loss) else ("eval_loss", eval_loss)
    return f"{what} became {value} at step {step}"


def _loop(method, x, state, oracle, comm, workload, steps, simulated, eval_every, fail_at, bar, traj) -> None:
    value_bits = wire.itemsize(x) * 8
    for t in bar:
        if fail_at is not None and fail_at(t):  # --inject-failure ...:nan: this rank's model becomes NaN
            x = x * math.nan
        comm.log.step = t
        start = time.perf_counter()
        x, state, loss = method.step(x, state, oracle, comm)
        traj.wall.append((t, time.perf_counter() - start, comm.log.seconds.get(t, 0.0)))
        loss = comm.mean_over_workers(loss)
        eval_loss = metric = math.nan
        if t % eval_every == 0 or t == steps - 1 or not math.isfinite(loss):
            eval_loss, metric = workload.evaluate(worker_mean(x, comm, simulated))
        sent, recv = comm.log.step_bytes(t)
        stated = method.stated_bits(value_bits, t, state)
        traj.rows.append((t, loss, eval_loss, metric, sent, recv, stated))
        traj.trace.extend((t, name, value) for name, value in method.trace(state).items())
        if not (math.isfinite(loss) and (math.isnan(eval_loss) or math.isfinite(eval_loss))):
            traj.status, traj.message = "diverged", diverged(loss, eval_loss, t)
            break
        if t % 10 == 0:
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
    traj.params = worker_mean(x, comm, simulated)
    traj.diagnostics = method.diagnostics(state)
