"""Equal tuning (issue 13, item 2): tune grids in a runs sheet, the workloads' validation splits, the
min_validation_loss rule at aggregation, and the equal-budget check of a claim's verdict."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.claims import read_claims, verdicts
from thinwire.analysis.table import aggregate
from thinwire.analysis.tuning import TUNING_MODE, check_equal_budget, select
from thinwire.workloads.registry import make_workload

from thinwire.config import load, plan
from thinwire.execute import RunSpec, run_sim


def _sheet(methods, workload="logreg", **entry):
    return {"runs": [{"name": "tiny", "mode": "sim", "workload": workload, "world_size": 2, "seeds": [0, 1],
                      "steps": 20, "methods": methods, **entry}]}


# --- the grid in a runs sheet -------------------------------------------------------------------------------


def test_a_tune_grid_expands_to_one_arm_per_point_in_product_order():
    _, runs = load(_sheet([{"method": "sgd", "label": "dense", "params": {"lr": 1.0, "weight_decay": 0.01},
                            "tune": {"lr": [0.5, 2.0], "momentum": [0.0, 0.9, 0.99]}},
                           {"method": "topk-ef", "params": {"density": 0.1}}]))
    dense = [r for r in runs if r.label.startswith("dense")]
    assert [r.label for r in dense if r.seed == 0] == [f"dense.t{i}" for i in range(6)]
    assert [r.id for r in dense[:2]] == ["tiny-sim-dense.t0-s0", "tiny-sim-dense.t0-s1"]
    # The last key varies fastest; a tuned key overrides the params, the others are kept.
    assert [(r.params["lr"], r.params["momentum"]) for r in dense if r.seed == 0] == \
           [(0.5, 0.0), (0.5, 0.9), (0.5, 0.99), (2.0, 0.0), (2.0, 0.9), (2.0, 0.99)]
    assert all(r.params["weight_decay"] == 0.01 for r in dense)
    untuned = [r for r in runs if r.method == "topk-ef"]
    assert [(r.label, r.params) for r in untuned] == [("topk-ef", {"density": 0.1})] * 2


@pytest.mark.parametrize("tune, message", [
    ({"gama": [0.5]}, "tune: sgd has no parameter 'gama'; its parameters: lr"),
    ({"lr": []}, r"tune.lr: \[\] should be non-empty"),
    ({"lr": 0.1}, "tune.lr: 0.1 is not of type 'array'"),
    ({}, r"tune: \{\} should be non-empty"),
    ([0.1, 0.2], "is not of type 'object'"),
    ({"lr": [0.1, 0.1]}, r"tune.lr repeats a value: \[0.1, 0.1\]"),
    ({"lr": ["fast"]}, "parameter 'lr' must be float, got 'fast'"),
])
def test_a_bad_grid_is_one_line_naming_it(tune, message):
    with pytest.raises(ThinwireError, match=message) as e:
        load(_sheet([{"method": "sgd", "tune": tune}]))
    assert "\n" not in str(e.value)


def test_grid_point_labels_are_reserved():
    with pytest.raises(ThinwireError, match=r"labels ending in .t<number> name tuning grid points"):
        load(_sheet([{"method": "sgd", "label": "dense.t0"}]))


def test_planning_refuses_a_tuned_run_without_a_validation_split():
    config, runs = load(_sheet([{"method": "sgd", "tune": {"lr": [0.05, 0.1]}}], workload="digits-mlp",
                               workload_params={"hidden": 8}))
    with pytest.raises(ThinwireError, match=r"has none with these parameters \(set workload_params.validation_fraction"):
        plan(config, runs)
    config, runs = load(_sheet([{"method": "sgd", "tune": {"lr": [0.05, 0.1]}}], workload="digits-mlp",
                               workload_params={"hidden": 8, "validation_fraction": 0.1}))
    plan(config, runs)


# --- validation splits --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lsq", "logreg", "logreg-nc", "sigmoid"])
def test_a_problems_validation_split_is_a_fresh_draw_that_leaves_training_alone(kind):
    w = make_workload(kind, 3, 4, {"samples_per_worker": 32, "dim": 8, "heterogeneity": 0.5})
    features, targets = w.features.copy(), w.targets.copy()
    x = np.random.default_rng(0).standard_normal(w.n_params) * 0.3
    value = w.validation_loss(x)
    assert w.validation_split and math.isfinite(value)
    assert np.array_equal(w.features, features) and np.array_equal(w.targets, targets)
    val_a, _ = w._validation
    assert val_a.shape == features.shape and not np.isin(val_a, features).any()
    # Same distribution: on a large draw the two objectives agree (the eval objective is the training one).
    big = make_workload(kind, 3, 4, {"samples_per_worker": 4000, "dim": 8, "heterogeneity": 0.5})
    assert big.validation_loss(x) == pytest.approx(big.evaluate(x)[0], rel=0.05)


def test_breast_cancer_validation_is_the_samples_the_workers_do_not_get():
    w = make_workload("sigmoid-bc", 2, 0, {"samples_per_worker": 200})
    assert w.validation_split == "the 169 samples the workers do not get"
    assert math.isfinite(w.validation_loss(np.zeros(30)))
    assert make_workload("sigmoid-bc", 2, 0, {"samples_per_worker": 284}).validation_split == "the 1 samples the workers do not get"


def test_digits_validation_is_held_back_from_training_and_the_test_split_is_unchanged():
    plain = make_workload("digits-mlp", 2, 3, {"hidden": 8})
    held = make_workload("digits-mlp", 2, 3, {"hidden": 8, "validation_fraction": 0.1})
    assert plain.validation_split == "" and math.isnan(plain.validation_loss(plain.x0()))
    assert np.array_equal(plain.test_features, held.test_features)  # the eval data is the same
    rows = lambda a: {r.tobytes() for r in a.reshape(-1, 64)}
    val, train, test = rows(held.validation_features), rows(held.features), rows(held.test_features)
    assert len(held.validation_labels) == 179 and not val & train and not val & test
    assert math.isfinite(held.validation_loss(held.x0()))


def test_text_validation_is_disjoint_from_the_eval_bytes():
    params = {"width": 16, "layers": 1, "heads": 2, "seq_len": 16}
    w = make_workload("text-gpt", 2, 0, {**params, "eval_bytes": 4096})
    assert w.validation_split == "4096 bytes of the held-out tail after the evaluated ones"
    evaluated = w.held_out[:4096]
    assert np.array_equal(w.validation_inputs.numpy().reshape(-1), w.held_out[4096:4096 + 255 * 16])
    assert np.array_equal(w.eval_inputs.numpy().reshape(-1), evaluated[:255 * 16])
    assert make_workload("text-gpt", 2, 0, params).validation_split == ""  # the eval reads the whole tail
    carved = make_workload("text-gpt", 2, 0, {**params, "validation_bytes": 2048})
    assert carved.validation_split == "2048 bytes held back from the end of the training bytes"
    assert np.array_equal(carved.eval_inputs, make_workload("text-gpt", 2, 0, params).eval_inputs)
    assert carved.shards.size <= w.shards.size - 2048
    assert math.isfinite(carved.validation_loss(carved.x0()))


# --- the rule -----------------------------------------------------------------------------------------------


def _runs(points, arm="dense", experiment="e", seeds=(0, 1), status=None):
    """A results table of one tuned arm: points[i] = (per-seed validation losses, per-seed eval losses)."""
    rows = []
    for i, (val, ev) in enumerate(points):
        for s, seed in enumerate(seeds):
            label = f"{arm}.t{i}" if len(points) > 1 else arm
            for step in range(3):
                last = step == 2
                rows.append({"run": f"{experiment}-sim-{label}-s{seed}", "method": "sgd", "mode": "sim",
                             "backend": "numpy", "workload": "logreg", "experiment": experiment, "label": label,
                             "params": json.dumps({"lr": [0.1, 1.0, 3.0][i], "momentum": 0.0}), "seed": seed,
                             "world_size": 2, "dtype": "float64", "step": step, "loss": 1.0, "metric": 0.9,
                             "eval_loss": ev[s] if last else 2.0, "val_loss": val[s] if last else np.nan,
                             "status": (status or {}).get(i, "ok"), "bytes_sent": 8, "n_params": 2})
    return pd.DataFrame(rows)


def _chosen(table, arm="dense"):
    rows = table[(table["label"] == arm) & (table["mode"] == "sim")]
    return json.loads(rows["params"].iloc[0])["lr"], json.loads(rows["tuning"].iloc[0])


def test_the_rule_chooses_the_lowest_mean_validation_loss_not_the_eval_loss():
    # t0 has the lowest eval loss (the data verdicts read); t2 the lowest validation loss: t2 is chosen.
    table = select(_runs([([0.50, 0.52], [0.10, 0.10]), ([0.40, 0.44], [0.30, 0.30]), ([0.30, 0.34], [0.50, 0.50])]))
    lr, record = _chosen(table)
    assert lr == 3.0 and record["chosen"] == "t2" and record["rule"] == "min_validation_loss"
    assert [p["val_loss"] for p in record["points"]] == pytest.approx([0.51, 0.42, 0.32])
    assert [p["values"] for p in record["points"]] == [{"lr": 0.1}, {"lr": 1.0}, {"lr": 3.0}]
    assert set(table.loc[table["label"].isin(["dense.t0", "dense.t1"]), "mode"]) == {TUNING_MODE}
    assert table[table["label"] == "dense"]["run"].nunique() == 2  # the chosen point's two seeds


def test_the_mean_over_seeds_decides_not_one_seed():
    lr, _ = _chosen(select(_runs([([0.10, 0.90], [1, 1]), ([0.45, 0.45], [1, 1])])))
    assert lr == 1.0  # t0 has the best single seed, t1 the best mean


def test_a_diverged_or_nan_point_loses_and_ties_go_to_the_lowest_index():
    lr, record = _chosen(select(_runs([([math.nan, 0.1], [1, 1]), ([0.5, 0.5], [1, 1]), ([0.5, 0.5], [1, 1])])))
    assert lr == 1.0 and record["points"][0]["val_loss"] is None  # t0: NaN loses; t1 and t2 tie: t1
    lr, _ = _chosen(select(_runs([([0.1, 0.1], [1, 1]), ([0.5, 0.5], [1, 1])], status={0: "diverged"})))
    assert lr == 1.0  # a diverged point loses even with a low last validation loss


def test_untuned_rows_are_left_as_they_are():
    table = _runs([([0.5, 0.5], [1, 1])])
    out = select(table)
    assert out.drop(columns="tuning").equals(table) and (out["tuning"] == "").all()


# --- the budget in a claim ----------------------------------------------------------------------------------


def _two_arms(a_points, b_points):
    return pd.concat([select(_runs(a_points, arm="a")), select(_runs(b_points, arm="b"))], ignore_index=True)


def _claim(**kw):
    return {"id": "C", "source": "s", "statement": "st", "setup": "se", "rule": "at_most", "expected": 2.0,
            "tolerance": 0.0, "kind": "paper claim", "paper_claim": "X",
            "quantity": {"name": "final_eval_loss_ratio", "experiment": "e", "label": "a", "baseline": "b"},
            "tuning": {"rule": "min_validation_loss", "arms": ["a", "b"]}, **kw}


POINTS3 = [([0.5, 0.5], [1.0, 1.1]), ([0.4, 0.4], [1.0, 1.1]), ([0.6, 0.6], [1.0, 1.1])]


def test_unequal_tuning_is_inconclusive_with_the_reason():
    table = _two_arms(POINTS3, [([0.5, 0.5], [1.0, 1.1])])
    v = verdicts(table, [_claim()]).iloc[0]
    assert v["verdict"] == "inconclusive"
    assert v["reason"] == "unequal tuning: a 3 points, b 1 point (untuned)" == v["tuning"]
    # Without the rule in the claim file the same runs are judged (the ratio 1 is within the bound).
    assert verdicts(table, [_claim(tuning=None)]).iloc[0]["verdict"] == "reproduced"


def test_equal_tuning_is_judged_and_the_tuning_column_gives_each_grid_and_choice():
    v = verdicts(_two_arms(POINTS3, POINTS3), [_claim()]).iloc[0]
    assert v["verdict"] == "reproduced"
    assert v["tuning"].startswith("min_validation_loss on the validation split, 3 points per arm: ")
    assert "a: lr [0.1, 1, 3] -> lr=1 (validation loss per point: t0 0.5; t1 0.4; t2 0.6)" in v["tuning"]
    assert "b: lr [0.1, 1, 3] -> lr=1" in v["tuning"]


def test_a_rule_over_untuned_arms_says_so_plainly():
    v = verdicts(_two_arms([([0.5, 0.5], [1.0, 1.1])], [([0.5, 0.5], [1.0, 1.1])]), [_claim()]).iloc[0]
    assert v["verdict"] == "reproduced"
    assert v["tuning"].startswith("not tuned: every arm ran the sheet's fixed settings (min_validation_loss")


def test_check_equal_budget_names_an_arm_without_runs():
    equal, text = check_equal_budget(select(_runs(POINTS3, arm="a")), {"rule": "min_validation_loss",
                                                                      "arms": ["a", "b"]})
    assert equal and text.endswith("; no runs of b")


@pytest.mark.parametrize("tuning, message", [
    ({"rule": "best_eval_loss", "arms": ["a", "b"]}, "tuning.rule must be one of"),
    ({"rule": "min_validation_loss", "arms": "a"}, "tuning.arms must list"),
    ({"rule": "min_validation_loss"}, "tuning must be"),
    ({"rule": "min_validation_loss", "arms": ["a", "c"]}, r"tuning.arms must include .*missing \['b'\]"),
])
def test_a_bad_tuning_entry_in_a_claim_file_is_refused(tmp_path, tuning, message):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump([_claim(tuning=tuning)]))
    with pytest.raises(ThinwireError, match=message):
        read_claims(path)


# --- end to end: a tiny grid through the runs, the table and a verdict ---------------------------------------


def test_a_two_point_grid_runs_and_the_table_exposes_the_chosen_point_under_the_plain_label(tmp_path):
    config, runs = load(_sheet([{"method": "sgd", "label": "dense", "params": {"momentum": 0.0},
                                 "tune": {"lr": [0.05, 2.0]}},
                                {"method": "saef", "label": "topk", "params": {"density": 0.2},
                                 "tune": {"lr": [0.05, 2.0]}}], workload_params={"dim": 20}))
    plan(config, runs)
    dirs = []
    for r in runs:
        spec = RunSpec(r.method, r.workload, steps=r.steps, seed=r.seed, params=r.params,
                       workload_params=r.workload_params, experiment=r.experiment, label=r.label)
        run_sim(spec, r.world_size, tmp_path / r.id, progress=False)
        dirs.append(tmp_path / r.id)
    metas = [json.loads((d / "meta.json").read_text()) for d in dirs]
    best = {}
    for arm in ("dense", "topk"):
        mean = {p: np.mean([m["val_loss"] for m in metas if m["label"] == f"{arm}.{p}"]) for p in ("t0", "t1")}
        best[arm] = min(mean, key=mean.get)
    table = aggregate(dirs, [], tmp_path / "table.csv")
    for arm, point in best.items():
        chosen = table[(table["label"] == arm) & (table["mode"] == "sim")]
        assert set(chosen["run"]) == {f"tiny-sim-{arm}.{point}-s0", f"tiny-sim-{arm}.{point}-s1"}
        assert json.loads(chosen["tuning"].iloc[0])["chosen"] == point
        others = table[table["label"].str.startswith(f"{arm}.")]
        assert set(others["mode"]) == {TUNING_MODE} and others["run"].nunique() == 2
    assert table.groupby("run")["val_loss"].count().eq(1).all()  # one final validation loss per run
    claim = _claim(quantity={"name": "final_eval_loss_ratio", "experiment": "tiny", "label": "topk",
                             "baseline": "dense"}, tuning={"rule": "min_validation_loss", "arms": ["topk", "dense"]})
    v = verdicts(pd.read_csv(tmp_path / "table.csv", dtype={"label": str, "experiment": str, "tuning": str}), [claim]).iloc[0]
    assert v["tuning"].startswith("min_validation_loss on the validation split, 2 points per arm: topk: lr [0.05, 2] ->")
    assert "seed" not in v["tuning"]  # saef's method seed follows the run's seed: not a tuned parameter
    assert v["verdict"] != "inconclusive" or "unequal" not in v["reason"]
