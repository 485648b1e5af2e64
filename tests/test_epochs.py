"""Claims read at an epoch: the table's epoch column, the step it resolves to, and the CL rows' steps at
the quick and standard batches."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.claims import load_claims
from thinwire.analysis.quantities import eval_loss_ratio_at_step, step_of
from thinwire.workloads.digits import DigitsConfig, DigitsWorkload
from thinwire.workloads.registry import epochs_per_step

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("world_size,params", [(4, {"batch_size": 256}), (4, {"batch_size": 28, "validation_fraction": 0.1}),
                                               (3, {"batch_size": 7, "test_fraction": 0.5})])
def test_epochs_per_step_is_the_batch_over_the_workload_s_own_shard(world_size, params):
    workload = DigitsWorkload("mlp", world_size, 0, DigitsConfig(**params))
    per = workload.features.shape[1]  # the digits each worker draws its batch from
    assert epochs_per_step("digits-mlp", world_size, params) == pytest.approx(params["batch_size"] / per)
    assert workload.epochs_per_step == epochs_per_step("digits-mlp", world_size, params)
    assert epochs_per_step("logreg", world_size, {}) is None


def _table(per_step: dict[str, float]) -> pd.DataFrame:
    rows = []
    for run, (label, eps) in enumerate(per_step.items()):
        for seed in (0, 1):
            for step in range(12):
                rows.append({"run": f"{label}-{seed}", "experiment": "e", "label": label, "mode": "sim", "seed": seed,
                             "step": step, "epoch": (step + 1) * eps, "status": "ok",
                             "eval_loss": 1.0 / (step + 1) * (1.0 if label == "base" else 0.5 + 0.1 * seed)})
    return pd.DataFrame(rows)


def test_an_epoch_is_read_at_the_first_step_that_completes_it():
    table = _table({"base": 0.3, "new": 0.3})
    assert step_of(table, epoch=1) == 3  # 4 steps of 0.3 epochs: 1.2
    assert step_of(table, epoch=0.6) == 1  # exactly 2 x 0.3, within rounding
    assert step_of(table, step=7) == 7
    by_epoch = eval_loss_ratio_at_step(table, "e", "new", "base", epoch=1)
    by_step = eval_loss_ratio_at_step(table, "e", "new", "base", step=3)
    assert by_epoch.value == by_step.value == pytest.approx(0.55)
    assert "epoch 1 (step 3)" in by_epoch.evidence


@pytest.mark.parametrize("per_step,epoch,message", [
    ({"base": 0.3, "new": 0.5}, 1, "different steps"),
    ({"base": 0.05, "new": 0.05}, 1, "ends before it"),
    ({"base": math.nan, "new": math.nan}, 1, "no epochs"),
])
def test_an_epoch_that_is_not_one_step_of_every_run_is_an_error(per_step, epoch, message):
    with pytest.raises(ThinwireError, match=message):
        step_of(_table(per_step), epoch=epoch)


def test_a_claim_names_the_step_or_the_epoch_not_both():
    for kwargs in ({}, {"step": 1, "epoch": 1}):
        with pytest.raises(ThinwireError, match="not both"):
            step_of(_table({"base": 0.3}), **kwargs)


@pytest.mark.parametrize("sheet,steps", [("quick", [1, 2, 6]), ("standard", [10, 20, 52])])
def test_the_clars_epoch_rows_read_the_steps_of_their_sheet_s_batch(sheet, steps):
    """Epochs 1, 2 and 5 at the quick batch (1,024 of 1,348 digits) and the standard one (112 of 1,168)."""
    from thinwire.config import load

    _, runs = load(ROOT / "config" / f"{sheet}.yaml")
    run = next(r for r in runs if r.experiment == "clars")
    per = epochs_per_step(run.workload, run.world_size, run.workload_params)
    claims = [c for c in load_claims() if c["id"].startswith(("CL-1-epoch", "CL-2-epoch"))]
    assert len(claims) == 6
    got = sorted({math.ceil(c["quantity"]["epoch"] / per - 1e-9) - 1 for c in claims})
    assert got == steps
