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
            "tolerance": 0.0, "quantity": {"name": "wire_bits_per_param", "method": "topk-ef"},
            "kind": "implementation check"}
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


_OK = "id: A, source: s, statement: s, setup: s, expected: 1"


@pytest.mark.parametrize("text, message", [
    ("- {id: A, source: s}\n", "missing"),
    (f"- {{{_OK}, kind: predicted, quantity: {{name: wire_bits_per_param}}, rule: roughly}}\n", "rule must be"),
    (f"- {{{_OK}, kind: predicted, quantity: {{name: vibes}}, rule: within}}\n", "quantity.name"),
    (f"- {{{_OK}, kind: predicted, quantity: {{name: wire_bits_per_param}}, rule: within, typo: 1}}\n", "unknown"),
    (f"- {{{_OK}, quantity: {{name: wire_bits_per_param}}, rule: within}}\n", "missing \\['kind'\\]"),
    (f"- {{{_OK}, kind: vibes, quantity: {{name: wire_bits_per_param}}, rule: within}}\n", "kind must be one of"),
    (f"- {{{_OK}, kind: paper claim, paper_claim: A2, quantity: {{name: model_prediction, claim: A2}}, rule: reported}}\n",
     "performance-model prediction, so its kind must be predicted"),
    (f"- {{{_OK}, kind: paper claim, quantity: {{name: wire_bits_per_param}}, rule: within}}\n",
     "a paper claim names the id it tests"),
    ("- {" + _OK + ", kind: paper claim, paper_claim: D3, power: {sends: 3}, quantity: {name: wire_bits_per_param}, "
     "rule: within}\n", "power must map quantities among"),
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
    # With standard errors: the ratio's is propagated, and the worst case is the largest ratio + 2 sem.
    noisy = study.assign(mse=[0.5, 1.0, 0.8, 1.0], mse_sem=[0.05, 0.0, 0.0, 0.0])
    v = verdicts(_table(), [claim], {"q": noisy}).iloc[0]
    assert v["measured"] == 0.8 and v["verdict"] == "reproduced"  # 0.8 beats 0.5 + 2 * 0.05
    noisy = noisy.assign(mse_sem=[0.5, 0.0, 0.0, 0.0])
    v = verdicts(_table(), [claim], {"q": noisy}).iloc[0]
    assert v["measured"] == 0.5 and v["verdict"] == "inconclusive"  # 0.5 + 2 * 0.5 > 1


def test_study_value_takes_the_worst_case_with_its_standard_error():
    study = pd.DataFrame({"distribution": ["g", "l", "t"], "code_bits": [2, 2, 2], "quantizer": "a",
                          "bias": [0.01, 0.02, 0.001], "bias_sem": [0.001, 0.001, 0.02]})

    def claim(rule, expected, worst):
        return _claim(rule=rule, expected=expected, tolerance=0.0,
                      quantity={"name": "study_value", "study": "q", "a": "a", "metric": "bias", "worst": worst})

    upper = verdicts(_table(), [claim("at_most", 0.03, "max")], {"q": study}).iloc[0]
    assert upper["measured"] == 0.001 and upper["verdict"] == "inconclusive"  # 0.001 + 2 * 0.02 > 0.03
    assert "t 2" in upper["evidence"]
    lower = verdicts(_table(), [claim("at_least", 0.005, "min")], {"q": study}).iloc[0]
    assert lower["measured"] == 0.001 and lower["verdict"] == "inconclusive"
    clear = study.assign(bias_sem=0.0)
    assert verdicts(_table(), [claim("at_least", 0.005, "min")], {"q": clear}).iloc[0]["verdict"] == "not reproduced"
    assert verdicts(_table(), [claim("at_most", 0.03, "max")], {"q": clear}).iloc[0]["verdict"] == "reproduced"
    with pytest.raises(ThinwireError, match="worst must be max or min"):
        verdicts(_table(), [claim("at_most", 0.03, "median")], {"q": study})


def test_a_reported_claim_shows_the_model_bandwidth_without_a_verdict():
    summary = pd.DataFrame({"run": ["a0", "a1", "a0", "a1"], "label": "a", "cluster": "c",
                            "quantity": "bandwidth_at_speedup", "target": [1.0, 1.0, 10.0, 10.0],
                            "value": [np.inf, np.inf, 2.0, 4.0]})
    claim = _claim(rule="reported", expected=None,
                   quantity={"name": "model_bandwidth", "study": "model-c", "label": "a", "speedup": 10})
    v = verdicts(_table(), [claim], {"model-c": summary}).iloc[0]
    assert v["verdict"] == "reported" and v["measured"] == 3.0 and np.isnan(v["expected"])
    assert "10x below 2, 4 Gbit/s" in v["evidence"] and "1x at every bandwidth" in v["evidence"]
    assert verdicts(_table(), [claim], {}).iloc[0]["verdict"] == "inconclusive"  # model job not run


def test_model_codec_share_reads_the_summary_at_one_bandwidth():
    summary = pd.DataFrame({"run": ["a0", "a1", "a0", "a1"], "label": "a", "cluster": "c",
                            "quantity": "codec_share", "target": np.nan, "bandwidth_gbps": [10.0, 10.0, 100.0, 100.0],
                            "value": [0.01, 0.03, 0.1, 0.2]})
    claim = _claim(rule="reported", expected=None,
                   quantity={"name": "model_codec_share", "study": "model-c", "label": "a", "bandwidth": 100})
    v = verdicts(_table(), [claim], {"model-c": summary}).iloc[0]
    assert v["verdict"] == "reported" and v["measured"] == pytest.approx(0.15)
    assert "10 Gbit/s 2.000%" in v["evidence"] and "100 Gbit/s 15.000%" in v["evidence"]
    other = dict(claim, quantity={**claim["quantity"], "label": "b"})
    assert verdicts(_table(), [other], {"model-c": summary}).iloc[0]["verdict"] == "inconclusive"


def test_quantizer_study_measures_every_case(tmp_path):
    from thinwire.simulators.quantizer_study import CASES, EQUAL_BITS, EQUAL_BITS_LABEL, run_study

    table = run_study(tmp_path / "q.csv", n=2048, draws=3)
    assert len(table) == 5 * (len(CASES) + len(EQUAL_BITS))
    # ORQ over (s + 1) x larger buckets spends QSGD's bits per value where the buckets divide the values.
    gauss = table[table["distribution"] == "gaussian"].set_index(["quantizer", "code_bits"])["bits_per_value"]
    assert gauss[EQUAL_BITS_LABEL, 2] == pytest.approx(gauss["qsgd", 2]) and gauss["orq", 2] > gauss["qsgd", 2]
    assert (table["mse"] > 0).all() and np.allclose(table["bias"] + table["variance"], table["mse"])
    deterministic = table[~table["unbiased"]]
    assert np.allclose(deterministic["bias"], deterministic["mse"])  # every draw the same: all error is bias
    assert pd.read_csv(tmp_path / "q.csv").shape == table.shape


def test_every_claim_in_scope_has_its_runs_in_the_quick_config():
    """A claim whose experiment, method or study the quick reproduction does not produce would be
    reported as inconclusive for a reason that has nothing to do with the paper."""
    from thinwire.analysis.tuning import arm_label

    from thinwire.config import load

    config, runs = load(ROOT / "config" / "quick.yaml")
    experiments = {r.experiment for r in runs}
    methods = {r.method for r in runs}
    labels = {(r.experiment, arm_label(r.label)) for r in runs}  # a tuned arm's grid points: its chosen one
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
            model = config.get("model", {})
            jobs = model.get("clusters", []) + [s["name"] for s in model.get("setups", [])]
            # validation-multinode: written by make cluster-test only (root, a real Slurm), as the default
            # study "validation" by make validate only.
            assert q["study"] in config.get("studies", []) + [f"model-{j}" for j in jobs] + ["validation-multinode"], \
                claim["id"]


def test_eval_loss_ratio_at_step_pairs_seeds_and_counts_a_diverged_run_as_infinite():
    from thinwire.analysis.quantities import eval_loss_ratio_at_step

    rows = []
    for label, losses in (("base", [[2.0, 1.0, 0.5]] * 3), ("new", [[2.0, 0.8, 0.4], [2.0, 0.9, 0.6], [2.0, 0.7]])):
        for seed, per_step in enumerate(losses):
            status = "diverged" if len(per_step) < 3 else "ok"
            rows += [{"experiment": "e", "label": label, "mode": "sim", "seed": seed, "step": step, "eval_loss": v,
                      "status": status} for step, v in enumerate(per_step)]
    table = pd.DataFrame(rows)
    early = eval_loss_ratio_at_step(table, "e", "new", "base", step=1)
    assert early.value == pytest.approx(0.8) and early.sem == pytest.approx(np.std([0.8, 0.9, 0.7], ddof=1) / 3 ** 0.5)
    late = eval_loss_ratio_at_step(table, "e", "new", "base", step=2)
    assert late.value == math.inf and late.sem == math.inf  # seed 2 diverged before step 2
    assert eval_loss_ratio_at_step(table, "e", "new", "other", step=1) is None


def test_a_loss_ratio_reads_only_its_experiment():
    """Another runs-sheet entry with the same methods and workload but other settings must not leak in."""
    from thinwire.analysis.quantities import final_loss_ratio

    ours = _table().assign(experiment="ef")
    other = ours.assign(experiment="saef", run=ours["run"] + "-saef",
                        eval_loss=np.where(ours["method"] == "sgd", 0.5, ours["eval_loss"]))
    both = pd.concat([ours, other], ignore_index=True)
    assert final_loss_ratio(both, "topk-ef", "sgd", "logreg", experiment="ef").value == pytest.approx(1.02)
    assert final_loss_ratio(both, "topk-ef", "sgd", "logreg", experiment="saef").value > 1.5


def test_standard_error_is_the_spread_of_the_mean_and_unknown_for_one_seed():
    from thinwire.analysis.quantities import standard_error

    assert standard_error(pd.Series([1.0, 2.0, 4.0])) == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1) / math.sqrt(3))
    assert standard_error(pd.Series([2.0, 2.0])) == 0.0  # seeds that agree: a decided comparison
    assert standard_error(pd.Series([1.5])) == math.inf
    assert standard_error(pd.Series([1.0, math.inf])) == math.inf


def _arms(per_seed: dict[str, list[float]], column: str, **extra) -> pd.DataFrame:
    """Two-step runs of experiment e, one per label and seed, `column` at the last step as given."""
    return pd.DataFrame([{"run": f"{label}-s{seed}", "experiment": "e", "label": label, "method": label,
                          "mode": "sim", "workload": "w", "seed": seed, "step": step, "dtype": "float32",
                          "status": "ok", column: value if step else np.nan, **extra}
                         for label, values in per_seed.items() for seed, value in enumerate(values)
                         for step in (0, 1)])


@pytest.mark.parametrize("seeds", [1, 3])
@pytest.mark.parametrize("name, column, args", [
    ("final_metric_gap", "metric", {"experiment": "e", "label": "b", "baseline": "a"}),
    ("final_eval_loss_ratio", "eval_loss", {"experiment": "e", "label": "b", "baseline": "a"}),
    ("final_loss_ratio", "eval_loss", {"method": "b", "baseline": "a", "workload": "w"}),
    ("volume_ratio", "link_bytes", {"experiment": "e", "label": "b", "baseline": "a", "steps": "last"}),
    ("diagnostic", "diag_x", {"experiment": "e", "label": "b", "diagnostic": "x"}),
    ("eval_loss_ratio_at_step", "eval_loss", {"experiment": "e", "label": "b", "baseline": "a", "step": 1}),
    ("rounds_ratio", "unused", {"experiment": "e", "label": "b", "baseline": "a"}),
])
def test_one_seed_never_decides_a_comparison(name, column, args, seeds):
    """Every claims function that averages over seeds follows one policy: one seed gives an infinite
    standard error (the verdict is inconclusive), seeds that agree give 0 (decided)."""
    from thinwire.analysis.quantities import QUANTITIES

    table = _arms({"a": [2.0] * seeds, "b": [1.0] * seeds}, column, bytes_sent=8)
    table["diag_x"] = table.get("diag_x", 1.0)
    m = QUANTITIES[name](table, **args)
    assert m is not None and (m.sem == math.inf) == (seeds == 1)
    verdict = judge("at_most", m.value, 100.0, 0.0, m.sem)
    assert verdict == ("inconclusive" if seeds == 1 else "reproduced")


def test_compression_ratio_gives_the_standard_error_of_its_mean_not_the_spread():
    from thinwire.analysis.quantities import compression_ratio

    table = pd.DataFrame({"experiment": "e", "method": "dgc", "mode": "sim", "workload": "w", "n_params": 1000,
                          "run": ["r0", "r1", "r2"], "step": 0, "bytes_sent": [40, 50, 80]})
    ratios = pd.Series([100.0, 80.0, 50.0])
    m = compression_ratio(table, experiment="e", method="dgc")
    assert m.value == pytest.approx(ratios.mean())
    assert m.sem == pytest.approx(ratios.std(ddof=1) / math.sqrt(3))
    assert compression_ratio(table[table["run"] == "r0"], experiment="e", method="dgc").sem == math.inf


def _lsq_runs(bytes_by_seed: dict[int, list[int]], method: str = "sgd", params: str = '{"lr": 0.1}',
              label: str = "a") -> pd.DataFrame:
    """Runs of `method` on the default lsq workload (100 parameters, float32, 2 workers), experiment e,
    logging the given bytes per step per seed."""
    return pd.DataFrame([{"run": f"{label}-s{seed}", "experiment": "e", "label": label, "method": method,
                          "params": params, "mode": "sim", "workload": "lsq", "world_size": 2, "seed": seed,
                          "dtype": "float32", "step": step, "bytes_sent": b, "n_params": 100, "status": "ok",
                          "link_bytes": b}
                         for seed, per_step in bytes_by_seed.items() for step, b in enumerate(per_step)])


def test_bytes_equal_to_the_formula_are_exact_with_one_seed():
    """Dense SGD on 100 float32 parameters hands 400 bytes a step: its formula (32 bits per parameter),
    a function of the configuration and the step only, so its byte count has no seed-to-seed spread and
    one seed decides; the evidence says why."""
    from thinwire.analysis.quantities import EXACT, bytes_fixed, compression_ratio

    table = _lsq_runs({0: [400, 400, 400]})
    assert bytes_fixed(table) == (True, EXACT)
    m = compression_ratio(table, experiment="e", method="sgd")
    assert m.value == pytest.approx(1.0) and m.sem == 0.0 and EXACT in m.evidence
    claim = _claim(rule="within", expected=1.0, quantity={"name": "compression_ratio", "experiment": "e", "method": "sgd"})
    assert verdicts(table, [claim]).iloc[0]["verdict"] == "reproduced"


def test_bytes_that_vary_by_seed_stay_inconclusive_with_one_seed():
    """A method whose message size depends on the data (here: one step logs fewer bytes than the formula,
    as DGC's run-length escapes or sampled threshold would) is not exact: one seed stays inconclusive."""
    from thinwire.analysis.quantities import bytes_fixed, compression_ratio

    table = _lsq_runs({0: [400, 380, 400]})
    fixed, why = bytes_fixed(table)
    assert not fixed and "bytes depend on the data" in why and "step 1" in why
    m = compression_ratio(table, experiment="e", method="sgd")
    assert m.sem == math.inf and why in m.evidence
    claim = _claim(rule="within", expected=1.0, tolerance=0.5,
                   quantity={"name": "compression_ratio", "experiment": "e", "method": "sgd"})
    assert verdicts(table, [claim]).iloc[0]["verdict"] == "inconclusive"
    # With seeds the standard error is their spread, as for any measured quantity.
    seeds = _lsq_runs({0: [400, 380, 400], 1: [400, 400, 390], 2: [400, 400, 395]})
    assert 0 < compression_ratio(seeds, experiment="e", method="sgd").sem < math.inf


def test_a_periodic_method_is_exact_at_its_own_period():
    """DSM-LS sends once every tau steps: zeros between are part of its formula, not a spread."""
    from thinwire.analysis.quantities import bytes_fixed

    assert bytes_fixed(_lsq_runs({0: [0, 0, 0, 400] * 2}, "dsm-ls", '{"tau": 4}'))[0]
    assert not bytes_fixed(_lsq_runs({0: [0, 0, 400, 0] * 2}, "dsm-ls", '{"tau": 4}'))[0]


def _rounds_claim(needs: dict) -> dict:
    return _claim(id="S", kind="paper claim", paper_claim="S1", rule="at_most", expected=1.0, power=needs,
                  quantity={"name": "final_eval_loss_ratio", "experiment": "e", "label": "b", "baseline": "a"})


def test_an_under_powered_run_is_inconclusive_with_the_reason():
    """A deliberately short run: DSM-LS at tau 4 for 12 steps is 3 global rounds, below the 10 its claim
    asks; its clear numbers (b ends at half of a's loss, 3 agreeing seeds) must not decide the verdict."""
    rows = []
    for label, loss in (("a", 2.0), ("b", 1.0)):
        for seed in range(3):
            per_step = [0, 0, 0, 400] * 3
            runs = _lsq_runs({seed: per_step}, "dsm-ls", '{"tau": 4}', label)
            rows.append(runs.assign(eval_loss=np.where(runs["step"] == 11, loss + 0.01 * seed, np.nan)))
    table = pd.concat(rows, ignore_index=True)
    short = verdicts(table, [_rounds_claim({"seeds": 3, "global_rounds": 10})]).iloc[0]
    assert short["verdict"] == "inconclusive"
    assert short["reason"] == short["power"] == "under-powered: needs global_rounds >= 10, ran 3"
    assert short["measured"] == pytest.approx(0.5025, rel=1e-3)  # the number is still shown
    enough = verdicts(table, [_rounds_claim({"seeds": 3, "global_rounds": 3})]).iloc[0]
    assert enough["verdict"] == "reproduced" and enough["power"].startswith("powered: seeds 3 (>= 3)")
    few_seeds = verdicts(table[table["seed"] < 2], [_rounds_claim({"seeds": 3})]).iloc[0]
    assert few_seeds["verdict"] == "inconclusive" and few_seeds["power"] == "under-powered: needs seeds >= 3, ran 2"
    undeclared = verdicts(table, [_rounds_claim({})]).iloc[0]
    assert undeclared["verdict"] == "reproduced" and undeclared["power"] == "not declared"


def test_sends_per_coordinate_and_convergence_come_from_the_runs_own_parameters_and_logs():
    from thinwire.analysis.power import POWER

    q = {"experiment": "e", "label": "a", "baseline": "a"}
    dgc = _lsq_runs({0: [8] * 600}, "dgc", '{"density": 0.01, "warmup_steps": 100}')
    assert POWER["sends_per_coordinate"].measure(dgc, q) == pytest.approx(5.0)
    cser = _lsq_runs({0: [8] * 600}, "cser", '{"H": 256, "R1": 2048, "R2": 8}')
    assert POWER["sends_per_coordinate"].measure(cser, q) == pytest.approx(600 * (255 / (256 * 2048) + 1 / 2048))
    loss = dgc.assign(eval_loss=np.where(dgc["step"] % 100 == 99, 1.0, np.nan))
    loss.loc[loss["step"] == 499, "eval_loss"] = 1.1  # 10% above the final loss at 90% of the run
    drop = POWER["final_tenth_loss_drop"]
    assert not drop.at_least and drop.measure(loss, q) == pytest.approx(0.1)


def test_the_compressed_share_and_the_method_arm_of_a_method_keyed_claim():
    """1-bit Adam's share of steps after its freeze_step; a claim that names its arms by method within an
    experiment (EF-1: method topk-ef, baseline sgd) reads both arms' runs, not the baseline's alone."""
    from thinwire.analysis.power import POWER, check_power

    onebit = _lsq_runs({0: [8] * 200}, "onebit-adam", '{"freeze_step": 30}', label="onebit-adam")
    sgd = _lsq_runs({0: [8] * 200, 1: [8] * 200}, label="sgd")
    q = {"experiment": "e", "method": "onebit-adam", "baseline": "sgd"}
    assert POWER["compressed_share"].measure(onebit, q) == pytest.approx(0.85)
    table = pd.concat([onebit, sgd], ignore_index=True)
    claim = _claim(power={"seeds": 2, "compressed_share": 0.9}, quantity={"name": "final_loss_ratio", **q})
    powered, text = check_power(table, claim)
    # The method's single seed counts (seeds of the arm with the fewest), and its share is measured.
    assert not powered and "needs seeds >= 2, ran 1" in text and "needs compressed_share >= 0.9, ran 0.85" in text


def test_s3_confirmatory_runs_exactly_what_its_claim_file_fixed_and_exploratory_rows_stay_apart():
    """S3's settings were chosen after seeing results: its rows are exploratory, and the confirmatory rows
    read study sign_rate_confirm, whose seeds and horizons are the ones the claim file states, fresh against
    the exploratory study's, and which takes no options (no re-running it elsewhere until it passes)."""
    from thinwire.simulators import sign_rate_confirm, sign_rate_study

    from thinwire.options import study_kwargs

    by_id = {c["id"]: c for c in load_claims()}
    assert by_id["S3"]["kind"] == by_id["S3-l1"]["kind"] == "exploratory"
    for cid in ("S3-confirmatory", "S3-l1-confirmatory"):
        c = by_id[cid]
        assert c["kind"] == "paper claim" and c["paper_claim"] == "S3"
        assert c["quantity"]["study"] == "sign_rate_confirm"
        assert "seeds 10-14" in c["setup"] or cid.startswith("S3-l1")
        assert "10-14" in c["setup"]
    assert sign_rate_confirm.SEEDS == tuple(range(10, 15))
    assert "T = " + ", ".join(map(str, sign_rate_confirm.ROUNDS)) in by_id["S3-confirmatory"]["setup"]
    assert not set(sign_rate_confirm.ROUNDS) & {50, *sign_rate_study.ROUNDS}
    assert not set(sign_rate_confirm.SEEDS) & set(range(3))
    with pytest.raises(ThinwireError, match="study sign_rate_confirm takes"):
        study_kwargs("sign_rate_confirm", {"seeds": 3})


def test_a_study_ratio_at_the_longest_horizon_ignores_the_shorter_ones():
    """ZO-2's head-to-head rows: the ratio at the longest horizon only, worst over the seeds."""
    from thinwire.analysis.quantities import study_ratio

    df = pd.DataFrame([{"label": label, "seed": seed, "steps": t, "final_gm_sq": v * (1 + seed)}
                       for label, by_t in (("vr", {50: 4.0, 800: 1.0}), ("sgd", {50: 1.0, 800: 2.0}))
                       for t, v in by_t.items() for seed in range(2)])
    args = {"study": "z", "a": "vr", "b": "sgd", "match": ["seed", "steps"], "metric": "final_gm_sq", "group": "label"}
    assert study_ratio(pd.DataFrame(), {"z": df}, **args).value == pytest.approx(4.0)  # T = 50 dominates
    m = study_ratio(pd.DataFrame(), {"z": df}, **args, longest="steps")
    assert m.value == pytest.approx(0.5) and "800" in m.evidence and "50:" not in m.evidence


def test_a_comparison_at_unequal_bits_is_inconclusive_whatever_the_numbers_say():
    """Q-1 / Q-2 compare quantizers at equal total bits: a case where the bits per value differ by more
    than the claim's tolerance makes the row inconclusive, naming the case; within it the rule decides."""
    df = pd.DataFrame([{"quantizer": q, "distribution": d, "code_bits": 2, "mse": m, "bits_per_value": bits}
                       for d, orq_bits in (("gauss", 2.0625), ("digits", 2.0798))
                       for q, m, bits in (("orq", 0.5, orq_bits), ("qsgd", 1.0, 2.0625))])
    quantity = {"name": "study_ratio", "study": "quantizers", "a": "orq", "b": "qsgd",
                "match": ["distribution", "code_bits"], "same": {"bits_per_value": 0.01}}
    claim = _claim(rule="at_most", expected=1.0, quantity=quantity)
    row = verdicts(pd.DataFrame(), [claim], {"quantizers": df}).iloc[0]
    assert row["verdict"] == "inconclusive" and row["measured"] == pytest.approx(0.5)
    assert row["reason"].startswith("unequal bits_per_value: orq 2.08 vs qsgd 2.062 at digits 2")
    loose = {**claim, "quantity": {**quantity, "same": {"bits_per_value": 0.02}}}
    assert verdicts(pd.DataFrame(), [loose], {"quantizers": df}).iloc[0]["verdict"] == "reproduced"


def test_every_shipped_claim_has_a_kind_and_model_quantities_are_predicted():
    from thinwire.analysis.claims import KINDS, MODEL_QUANTITIES

    claims = load_claims()
    assert {c["kind"] for c in claims} <= set(KINDS)
    assert all(c["kind"] in ("predicted", "exploratory") for c in claims if c["quantity"]["name"] in MODEL_QUANTITIES)
    # an exploratory model row is a reading of a predicted cell, never a claim of its own
    cells = {c["quantity"].get("claim") for c in claims if c["kind"] == "predicted"}
    assert all(c["quantity"].get("view") == "exploratory" and c["quantity"]["claim"] in cells
               for c in claims if c["kind"] == "exploratory" and c["quantity"]["name"] in MODEL_QUANTITIES)
    by_id = {c["id"]: c["kind"] for c in claims}
    for check in ("CL-inv", "Q-1-binary", "Q-2-bingrad-biased", "TW-1", "TW-2", "TW-3", "ZO-2-svrg"):
        assert by_id[check] == "implementation check", check


def test_a_model_row_reads_its_public_prediction_or_its_exploratory_reading_apart():
    row = {"claimed": 4.0, "predicted": 2.0, "error": -0.5, "band_low": 1.8, "band_high": 2.4, "consistent": False,
           "predicted_calibrated": np.nan, "baseline_tflops_stated": 14.5, "baseline_tflops_predicted": 75.0,
           "method_tflops_stated": 59.0}
    predicted = pd.DataFrame([
        {**row, "claim": "P", "exploratory_reading": "tiers.inter.bandwidth_gbps = 400", "predicted_exploratory": 4.4,
         "error_exploratory": 0.1, "baseline_tflops_exploratory": 12.8, "method_tflops_exploratory": 58.0},
        {**row, "claim": "Q", "exploratory_reading": "", "predicted_exploratory": np.nan, "error_exploratory": np.nan,
         "baseline_tflops_exploratory": np.nan, "method_tflops_exploratory": np.nan}])
    claims = [_claim(id=f"{c}{v[0]}", kind="predicted" if v == "public" else "exploratory", rule="reported",
                     expected=None, quantity={"name": "model_prediction", "claim": c, "view": v})
              for c in "PQ" for v in ("public", "exploratory")]
    v = verdicts(pd.DataFrame(), claims, {"model-predicted": predicted}).set_index("id")
    assert v.loc["Pp", "measured"] == 2.0 and "not consistent within the model's error" in v.loc["Pp", "evidence"]
    assert v.loc["Pe", "measured"] == 4.4 and v.loc["Pe", "verdict"] == "reported"
    assert "found after seeing the predictions (tiers.inter.bandwidth_gbps = 400)" in v.loc["Pe", "evidence"]
    assert "baseline 12.8 TFLOP/s per GPU against the stated 14.5" in v.loc["Pe", "evidence"]
    assert v.loc["Qe", "verdict"] == "inconclusive"  # no reading for this cell: nothing to report
    assert set(v["value_from"]) == {"model"}  # the report calls these values the model's, not measurements
    assert verdicts(_table(), [_claim()]).iloc[0]["value_from"] == "runs"
    bad = _claim(rule="reported", expected=None, kind="exploratory",
                 quantity={"name": "model_prediction", "claim": "P", "view": "calibrated"})
    with pytest.raises(ThinwireError, match="view must be public or exploratory"):
        verdicts(pd.DataFrame(), [bad], {"model-predicted": predicted})
