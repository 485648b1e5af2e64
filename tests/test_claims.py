"""Claims as data: loading, every verdict rule, and verdicts computed from a results table."""

import math

import numpy as np
import pandas as pd
import pytest
from launch import ROOT
from thinwire.algorithms.comm import ThinwireError
from thinwire.analysis.claims import judge, load_claims, verdicts


@pytest.mark.parametrize("rule, measured, expected, tol, sem, verdict", [
    ("within", 1.0, 1.0, 0.0, 0.0, "reproduced"),
    ("within", 1.1, 1.0, 0.05, 0.0, "not reproduced"),
    ("within", 1.04, 1.0, 0.05, 0.0, "reproduced"),
    ("within", 1.06, 1.0, 0.05, 0.01, "inconclusive"),
    ("at_most", 0.9, 1.0, 0.0, 0.0, "reproduced"),
    ("at_most", 1.2, 1.0, 0.0, 0.0, "not reproduced"),
    ("at_most", 0.99, 1.0, 0.0, 0.01, "inconclusive"),
    ("at_most", 0.9, 1.0, 0.0, math.inf, "inconclusive"),  # one seed: no spread to judge by
    ("at_least", 4.5, 4.0, 0.0, 0.0, "reproduced"),
    ("at_least", 3.0, 4.0, 0.5, 0.0, "not reproduced"),
    ("at_least", 3.9, 4.0, 0.0, 0.1, "inconclusive"),
    ("at_most", math.nan, 1.0, 0.0, 0.0, "inconclusive"),
])
def test_judge(rule, measured, expected, tol, sem, verdict):
    assert judge(rule, measured, expected, tol, sem) == verdict


def _table():
    rows = []
    for method, bits in (("sgd", 32.0), ("topk-ef", 0.64)):
        for seed, final in enumerate((1.0, 1.1, 0.9)):
            for step in range(3):
                rows.append({"run": f"{method}-{seed}", "method": method, "mode": "sim", "backend": "numpy",
                             "workload": "logreg", "params": "{}", "world_size": 2, "seed": seed, "dtype": "float64",
                             "step": step, "loss": 2.0 - step, "eval_loss": final * (1.02 if method != "sgd" else 1.0),
                             "bytes_sent": int(bits * 1000 / 8), "n_params": 1000, "stated_bits_per_param": bits,
                             "stated_bits": bits,
                             "status": "ok"})
    return pd.DataFrame(rows)


def _claim(**kw):
    base = {"id": "X", "source": "s", "statement": "st", "setup": "se", "rule": "within", "expected": "stated",
            "tolerance": 0.0, "quantity": {"name": "wire_bits_per_param", "method": "topk-ef"}}
    return {**base, **kw}


def test_verdicts_from_a_table():
    claims = [
        _claim(id="BITS"),
        _claim(id="RATIO", rule="at_most", expected=1.05,
               quantity={"name": "final_loss_ratio", "method": "topk-ef", "baseline": "sgd", "workload": "logreg"}),
        _claim(id="STRICT", rule="at_most", expected=1.0,
               quantity={"name": "final_loss_ratio", "method": "topk-ef", "baseline": "sgd", "workload": "logreg"}),
        _claim(id="NODATA", quantity={"name": "wire_bits_per_param", "method": "dgc"}),
        _claim(id="FAR", out_of_scope="needs 128 GPUs"),
    ]
    v = verdicts(_table(), claims).set_index("id")
    assert v.loc["BITS", "verdict"] == "reproduced" and v.loc["BITS", "measured"] == pytest.approx(0.64)
    assert v.loc["RATIO", "verdict"] == "reproduced" and v.loc["RATIO", "measured"] == pytest.approx(1.02)
    assert v.loc["STRICT", "verdict"] == "not reproduced"
    assert v.loc["NODATA", "verdict"] == "inconclusive" and "no results" in v.loc["NODATA", "reason"]
    assert v.loc["FAR", "verdict"] == "out of scope" and v.loc["FAR", "reason"] == "needs 128 GPUs"


def test_a_wrong_byte_count_is_not_reproduced():
    table = _table()
    table.loc[(table["method"] == "topk-ef") & (table["step"] == 2) & (table["seed"] == 1), "bytes_sent"] += 1
    v = verdicts(table, [_claim()]).iloc[0]
    assert v["verdict"] == "not reproduced"
    assert v["evidence"].startswith("8 of 9 steps")


def test_shipped_claims_load_and_have_unique_ids():
    claims = load_claims()
    assert {"TW-1", "TW-2", "TW-3", "EF-1"} <= {c["id"] for c in claims}


@pytest.mark.parametrize("text, message", [
    ("- {id: A, source: s}\n", "missing"),
    ("- {id: A, source: s, statement: s, setup: s, quantity: {name: wire_bits_per_param}, rule: roughly, expected: 1}\n",
     "rule must be"),
    ("- {id: A, source: s, statement: s, setup: s, quantity: {name: vibes}, rule: within, expected: 1}\n",
     "quantity.name"),
    ("- {id: A, source: s, statement: s, setup: s, quantity: {name: wire_bits_per_param}, rule: within, expected: 1, typo: 1}\n",
     "unknown"),
    ("- [oops\n", "not valid YAML"),
])
def test_malformed_claim_files_are_named(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ThinwireError, match=message):
        load_claims(tmp_path)


def test_mode_agreement_pairs_sim_and_real():
    sim = _table().query("method == 'sgd' and seed == 0")
    real = sim.assign(mode="real", backend="gloo", run="real", loss=sim["loss"] + 1e-9)
    v = verdicts(pd.concat([sim, real]), [_claim(rule="at_most", expected=1e-6, quantity={"name": "mode_agreement"})])
    assert v.iloc[0]["verdict"] == "reproduced" and v.iloc[0]["measured"] == pytest.approx(1e-9)
    far = real.assign(loss=real["loss"] + np.array([0, 0, 1e-3]))
    v = verdicts(pd.concat([sim, far]), [_claim(rule="at_most", expected=1e-6, quantity={"name": "mode_agreement"})])
    assert v.iloc[0]["verdict"] == "not reproduced"


def test_study_ratio_reads_the_named_study():
    study = pd.DataFrame({"distribution": ["g", "g", "l", "l"], "quantizer": ["a", "b", "a", "b"],
                          "mse": [1.0, 2.0, 3.0, 2.0], "bits_per_value": [1.0, 1.0, 1.0, 1.0]})
    claim = _claim(rule="at_most", expected=1.0,
                   quantity={"name": "study_ratio", "study": "q", "a": "a", "b": "b", "match": ["distribution"]})
    v = verdicts(_table(), [claim], {"q": study}).iloc[0]
    assert v["measured"] == 1.5 and v["verdict"] == "not reproduced" and "worst case l" in v["evidence"]
    assert verdicts(_table(), [claim], {}).iloc[0]["verdict"] == "inconclusive"  # study not run


def test_quantizer_study_measures_every_case(tmp_path):
    from thinwire.simulators.quantizer_study import CASES, run_study

    table = run_study(tmp_path / "q.csv", n=2048, draws=3)
    assert len(table) == 4 * len(CASES)
    assert (table["mse"] > 0).all() and (table["bias"] <= table["mse"] + 1e-12).all()
    deterministic = table[~table["unbiased"]]
    assert (deterministic["bias"] == deterministic["mse"]).all()  # one draw: all error is bias
    assert pd.read_csv(tmp_path / "q.csv").shape == table.shape


def test_every_claim_in_scope_has_its_runs_in_the_quick_config():
    """A claim whose experiment, method or study the quick reproduction does not produce would be
    reported as inconclusive for a reason that has nothing to do with the paper."""
    from thinwire.config import load

    config, runs = load(ROOT / "config" / "quick.yaml")
    experiments = {r.experiment for r in runs}
    methods = {r.method for r in runs}
    labels = {(r.experiment, r.label) for r in runs}
    for claim in load_claims():
        if claim.get("out_of_scope"):
            continue
        q = claim["quantity"]
        if "experiment" in q:
            assert q["experiment"] in experiments, claim["id"]
        for key in ("label", "baseline"):
            if key in q and "experiment" in q:
                assert (q["experiment"], q[key]) in labels, (claim["id"], q[key])
        if "method" in q:
            assert q["method"] in methods, claim["id"]
        if "study" in q:
            assert q["study"] in config.get("studies", []), claim["id"]
