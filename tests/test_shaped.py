"""Shaped links between network namespaces, the link fit and the validation sheet."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from thinwire.algorithms.comm import ThinwireError
from thinwire.workloads.linkbench import fit_alpha_beta
from thinwire.workloads.shaped import ShapedNet, unavailable

from thinwire.validate import load_sheet

REASON = unavailable()
needs_netns = pytest.mark.skipif(REASON is not None, reason=f"shaped links unavailable: {REASON}")


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout


RECEIVER = textwrap.dedent("""
    import socket, sys, time
    s = socket.create_server((sys.argv[1], 29700)); c, _ = s.accept(); n = 0; start = None
    while chunk := c.recv(1 << 16):
        start = start or time.perf_counter(); n += len(chunk)
    print(n * 8 / (time.perf_counter() - start) / 1e6)
""")
SENDER = textwrap.dedent("""
    import socket, sys, time
    for _ in range(100):
        try:
            c = socket.create_connection((sys.argv[1], 29700)); break
        except OSError:
            time.sleep(0.05)
    c.sendall(bytes(int(sys.argv[2]))); c.close()
""")


@needs_netns
def test_link_rate_and_cleanup():
    """A 100 Mbit/s link carries a bulk transfer at 90-100 Mbit/s; the namespaces are gone afterwards."""
    with ShapedNet(2, 100, prefix="twtest") as net:
        assert "twtest-r0" in _namespaces() and "twtest-sw" in _namespaces()
        rx = net.popen(1, [sys.executable, "-c", RECEIVER, net.address(1)], stdout=subprocess.PIPE, text=True)
        time.sleep(0.2)
        tx = net.popen(0, [sys.executable, "-c", SENDER, net.address(1), str(4 << 20)])
        assert tx.wait(timeout=30) == 0
        mbit = float(rx.communicate(timeout=30)[0])
    assert 90 <= mbit <= 100, mbit
    assert "twtest" not in _namespaces()


@needs_netns
def test_namespaces_removed_when_the_body_fails():
    with pytest.raises(RuntimeError), ShapedNet(2, None, prefix="twfail"):
        assert "twfail-r1" in _namespaces()
        raise RuntimeError("boom")
    assert "twfail" not in _namespaces()


def test_shaped_net_rejects_impossible_links():
    with pytest.raises(ThinwireError, match="at least 2 ranks"):
        ShapedNet(1, 100)
    with pytest.raises(ThinwireError, match="rate must be positive"):
        ShapedNet(2, 0)


def test_alpha_beta_fit_recovers_the_ring_formula():
    sizes = [1 << 10, 1 << 13, 1 << 16, 1 << 18, 1 << 20, 1 << 22]
    alpha, beta, p = 50e-6, 8 / 1e8, 2
    seconds = [2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta for n in sizes]
    a, b = fit_alpha_beta(sizes, seconds, p)
    assert a == pytest.approx(alpha, rel=1e-6) and b == pytest.approx(beta, rel=1e-6)
    noisy = np.asarray(seconds) * (1 + 0.02 * np.random.default_rng(0).standard_normal(len(sizes)))
    a, b = fit_alpha_beta(sizes, list(noisy), p)
    assert b == pytest.approx(beta, rel=0.1)


def test_validation_sheet_errors(tmp_path):
    sheet = tmp_path / "v.yaml"
    sheet.write_text("workload: digits-mlp\nsteps: 10\nskip: 2\nrates_mbit: [100]\n"
                     "methods: [{method: topk-ef}]\n")
    with pytest.raises(ThinwireError, match="labelled 'sgd'"):
        load_sheet(sheet)
    sheet.write_text("workload: digits-mlp\nsteps: 10\nskip: 10\nrates_mbit: [100]\nmethods: [{method: sgd}]\n")
    with pytest.raises(ThinwireError, match="skip must be in"):
        load_sheet(sheet)
    sheet.write_text("workload: digits-mlp\nsteps: 10\n")
    sheet.write_text("workload: digits-mlp\nsteps: 10\nskip: 2\nrepeats: 0\nrates_mbit: [100]\n"
                     "methods: [{method: sgd}]\n")
    with pytest.raises(ThinwireError, match="repeats must be an integer >= 1"):
        load_sheet(sheet)
    sheet.write_text("workload: digits-mlp\nsteps: 10\nskip: 2\nstep_stat: p90\nrates_mbit: [100]\n"
                     "methods: [{method: sgd}]\n")
    with pytest.raises(ThinwireError, match="step_stat must be one of"):
        load_sheet(sheet)
    sheet.write_text("workload: digits-mlp\nsteps: 10\n")
    with pytest.raises(ThinwireError, match="no 'skip'"):
        load_sheet(sheet)


def test_prediction_is_calibrated_local_time_plus_priced_communication(tmp_path):
    """predicted = the calibration run's step time minus its own CommLog priced on the calibration link,
    plus the run's CommLog priced on the run's link; the first `skip` steps count nowhere."""
    import json

    import pandas as pd

    from thinwire.validate import predict

    def run_dir(name, walls, sent):
        d = tmp_path / name
        d.mkdir()
        steps = range(len(walls))
        pd.DataFrame({"step": steps, "wall_s": walls, "comm_s": 0.0}).to_csv(d / "timing.csv", index=False)
        pd.DataFrame({"step": steps, "op": "all_reduce", "group_size": 2, "sent": sent, "recv": sent,
                      "category": "method"}).to_csv(d / "commlog.csv", index=False)
        return d

    def link(name, gbps, latency_us):
        path = tmp_path / name
        path.write_text(json.dumps({"bandwidth_gbps": gbps, "latency_us": latency_us}))
        return path

    cal = run_dir("cal", [1.0] + [0.010] * 5, 1_000_000)
    run = run_dir("run", [1.0] + [0.020] * 5, 1_000_000)
    row = predict([run], [cal], link("loop.json", 8.0, 10.0), link("shaped.json", 1.0, 50.0), skip=1)
    # ring all-reduce of 2 ranks: 2 alpha + n beta
    cal_comm, run_comm = 2 * 10e-6 + 1_000_000 / 1e9, 2 * 50e-6 + 1_000_000 * 8 / 1e9
    assert row["local_s"] == pytest.approx(0.010 - cal_comm)
    assert row["comm_predicted_s"] == pytest.approx(run_comm)
    assert row["predicted_s"] == pytest.approx(0.010 - cal_comm + run_comm)
    assert row["measured_s"] == pytest.approx(0.020)
    assert row["repeats"] == 1 and row["measured_spread"] == 0.0

    # Repeated runs: medians over the rounds, and the spread of the measured ones.
    cals = [cal, run_dir("cal2", [1.0] + [0.012] * 5, 1_000_000), run_dir("cal3", [1.0] + [0.030] * 5, 1_000_000)]
    runs = [run, run_dir("run2", [1.0] + [0.025] * 5, 1_000_000), run_dir("run3", [1.0] + [0.021] * 5, 1_000_000)]
    row = predict(runs, cals, link("loop.json", 8.0, 10.0), link("shaped.json", 1.0, 50.0), skip=1)
    assert row["local_s"] == pytest.approx(0.012 - cal_comm)
    assert row["measured_s"] == pytest.approx(0.021)
    assert row["measured_spread"] == pytest.approx((0.025 - 0.020) / 0.021)
    assert row["local_spread"] == pytest.approx((0.030 - 0.010) / (0.012 - cal_comm))
    assert row["repeats"] == 3
    assert row["measured_runs_s"] == "0.02;0.025;0.021" and row["calibration_runs_s"] == "0.01;0.012;0.03"
    # each round predicts its run from its own calibration; the error is the median of the rounds' ratios
    ratios = [(c - cal_comm + run_comm) / m for c, m in ((0.010, 0.020), (0.012, 0.025), (0.030, 0.021))]
    assert row["error"] == pytest.approx(sorted(ratios)[1] - 1)
    assert row["round_errors"] == ";".join(f"{q - 1:.9g}" for q in ratios)
    assert row["error_spread"] == pytest.approx((max(ratios) - min(ratios)) / sorted(ratios)[1])
    with pytest.raises(ThinwireError, match="each round needs both"):
        predict(runs, cals[:2], link("loop.json", 8.0, 10.0), link("shaped.json", 1.0, 50.0), skip=1)


def rounds(*logs: float) -> str:
    """A case's round_errors whose rounds' predicted / measured are e^x for each x."""
    import math

    return ";".join(f"{math.exp(x) - 1:.12g}" for x in logs)


def test_noise_floor_is_what_a_perfect_model_shows_at_the_runs_noise():
    """One case whose rounds' predicted / measured are e^-u, 1, e^u: the pooled residuals are -v, 0, v
    (v = u sqrt(3/2)), drawn a third of the time each; a median of 3 draws is e^v with probability 7/27
    (and e^-v as often), so the 95% floor is e^v - 1, and the median quantile 1 - e^-v (|error| 0 comes
    up with probability 13/27, under half)."""
    import math

    import pandas as pd

    from thinwire.validate import noise_floor

    u = 0.05
    v = u * math.sqrt(1.5)

    def table(errors=None):
        return pd.DataFrame({"round_errors": [errors or rounds(-u, 0.0, u)], "predicted_s": [1.0]})

    assert noise_floor(table(), "max") == pytest.approx(math.exp(v) - 1)
    assert noise_floor(table(), "median") == pytest.approx(math.exp(v) - 1)  # one case: its error
    assert noise_floor(table(), "max", q=0.5) == pytest.approx(1 - math.exp(-v))
    # a case off by a constant factor has no noise: the residuals are about the case's own mean
    assert noise_floor(table(rounds(0.2, 0.2, 0.2)), "max") == pytest.approx(0.0, abs=1e-9)
    assert noise_floor(table("0.1"), "max") == math.inf  # one round: the noise is unknown
    with pytest.raises(ThinwireError, match="stat must be median or max"):
        noise_floor(table(), "mean")


def test_bound_test_is_what_a_model_erring_by_the_bound_shows_at_the_runs_noise():
    """Without noise a model erring by the bound shows exactly the bound: below = above = bound. With one
    case whose rounds are e^-u, 1, e^u (pooled residuals -v, 0, v, a median of 3 draws r at e^-v, 1, e^v
    with probabilities 7, 13, 7 in 27), |error| is |(1 + e) r - 1|. With every sign + (e = B = 25%,
    v = 6.1%) r is e^v in 26% of resamples and e^-v as often: the 95% quantile is (1 + B) e^v - 1 = 33%
    and the 5% quantile (1 + B) e^-v - 1 = 18%, the extremes over the configurations (every sign -:
    29% and 20%)."""
    import math

    import pandas as pd

    from thinwire.validate import bound_test

    def table(errors, cases=1):
        return pd.DataFrame({"round_errors": [errors] * cases, "predicted_s": [1.0] * cases})

    for stat in ("median", "max"):
        assert bound_test(table("0;0;0", 5), stat, 0.25) == pytest.approx((0.25, 0.25))
    for cases in (4, 6):  # even: the mean of the middle two, n // 2 + 1 cases at the bound (n // 2: half of it)
        assert bound_test(table("0;0;0", cases), "median", 0.25) == pytest.approx((0.25, 0.25))
    u, b = 0.05, 0.25
    v = u * math.sqrt(1.5)
    noisy = table(rounds(-u, 0.0, u))
    for stat in ("median", "max"):  # one case: both are that case's error
        assert bound_test(noisy, stat, b) == pytest.approx(((1 + b) * math.exp(-v) - 1, (1 + b) * math.exp(v) - 1))
    assert bound_test(table("0.1"), "max", b) == (-math.inf, math.inf)  # one round: nothing is decided
    with pytest.raises(ThinwireError, match="stat must be median or max"):
        bound_test(noisy, "mean", b)


def test_noise_pool_takes_each_round_s_ratio_about_its_case():
    import math

    import pandas as pd

    from thinwire.validate import noise_pool

    table = pd.DataFrame({"round_errors": [rounds(-0.1, 0.0, 0.1), rounds(0.0, 0.3)]})
    pool = np.log(noise_pool(table))
    s3, s2 = math.sqrt(3 / 2), math.sqrt(2)
    expected = [-0.1 * s3, 0.0, 0.1 * s3, -0.15 * s2, 0.15 * s2]
    assert pool == pytest.approx(expected, abs=1e-9)


def test_the_validation_figure_draws_the_perfect_model_s_largest_error():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from thinwire.analysis.evidence import _validation_view

    from thinwire.validate import noise_floor

    claim = {"id": "v", "expected": 0.25, "tolerance": 0.0, "quantity": {"name": "validation_error", "stat": "max"}}
    study = pd.DataFrame({"label": ["topk", "sgd"], "bandwidth": "100mbit", "measured_s": [0.1, 0.02],
                          "predicted_s": [0.11, 0.018], "error": [0.1, -0.1],
                          "round_errors": ["0.1;0.05;0.2", "-0.1;-0.12;-0.05"]})
    _, draw = _validation_view(claim)
    fig, ax = plt.subplots()
    assert draw(ax, pd.DataFrame(), {"validation": study}, [claim])
    labels = ax.get_legend_handles_labels()[1]
    plt.close(fig)
    assert f"perfect model's max at this noise (95%): +-{noise_floor(study, 'max'):.0%}" in labels


def test_median_step_time_keeps_the_mix_of_sync_and_local_steps(tmp_path):
    """step_stat median: the median time of each kind of step (what it sent), weighted by the kinds'
    shares. A run that syncs every 4th step keeps its sync steps, which a plain median drops; a stall
    moves it much less than the mean."""
    import pandas as pd

    from thinwire.validate import step_time

    steps = list(range(41))  # step 0 is skipped
    sync = [s % 4 == 3 for s in steps]
    wall = [0.030 if y else 0.010 for y in sync]
    wall[6] = 0.500  # a stall on a local step
    pd.DataFrame({"step": steps, "wall_s": wall, "comm_s": [0.02 if y else 0.0 for y in sync]}).to_csv(
        tmp_path / "timing.csv", index=False)
    rows = [{"step": s, "op": "all_reduce", "group_size": 2, "sent": 8, "recv": 8, "category": "metrics"}
            for s in steps]
    rows += [{"step": s, "op": "all_reduce", "group_size": 2, "sent": 10**6, "recv": 10**6, "category": "method"}
             for s in steps if sync[s]]
    pd.DataFrame(rows).to_csv(tmp_path / "commlog.csv", index=False)
    # steps 1..40: 10 sync steps (3, 7, ..., 39) and 30 local ones
    assert step_time(tmp_path, "wall_s", 1, "median") == pytest.approx(0.25 * 0.030 + 0.75 * 0.010)
    assert step_time(tmp_path, "comm_s", 1, "median") == pytest.approx(0.25 * 0.02)
    assert step_time(tmp_path, "wall_s", 1, "mean") == pytest.approx((10 * 0.030 + 29 * 0.010 + 0.500) / 40)
    # (a plain median of these steps would say 0.010: a local step, the sync steps dropped)
    with pytest.raises(ThinwireError, match="step statistic must be one of"):
        step_time(tmp_path, "wall_s", 1, "p90")


def test_a_kept_run_is_reused_only_if_it_ran_what_the_sheet_asks(tmp_path):
    import json

    from thinwire.validate import _done

    sheet = {"workload": "digits-mlp", "steps": 60, "workload_params": {"hidden": 64}}
    method = {"method": "topk-ef", "params": {"density": 0.01}}
    run = tmp_path / "run"
    run.mkdir()
    meta = {"method": "topk-ef", "steps": 60, "workload": "digits-mlp", "params": {"density": 0.01, "lr": 0.1},
            "workload_params": {"hidden": 64, "batch_size": 32}}
    (run / "meta.json").write_text(json.dumps(meta))
    assert _done(run, sheet, method)
    (run / "meta.json").write_text(json.dumps({**meta, "steps": 30}))
    assert not _done(run, sheet, method) and not run.exists()  # stale: removed, to be run again


def test_validation_verdict_reads_noise_as_inconclusive():
    """An error within the runs' own spread of the bound is inconclusive; outside it, a result."""
    import pandas as pd
    from thinwire.analysis.claims import verdicts

    claim = {"id": "v", "source": "s", "statement": "s", "setup": "s", "rule": "at_most", "expected": 0.10,
             "tolerance": 0.0, "figure": "", "quantity": {"name": "validation_error", "stat": "median"}}

    def verdict(error, spread):
        study = pd.DataFrame({"error": [error] * 3, "measured_spread": [spread] * 3, "bandwidth": "100mbit",
                              "label": "sgd", "predicted_s": 1.0, "measured_s": 1.0, "repeats": 3})
        return verdicts(pd.DataFrame(), [claim], {"validation": study}).iloc[0][["verdict", "reason"]]

    assert verdict(0.05, 0.27)["verdict"] == "inconclusive"  # the spread is larger than the bound
    assert "over runs" in verdict(0.05, 0.27)["reason"]  # the noise is the runs', not seeds'
    assert verdict(0.05, 0.02)["verdict"] == "reproduced"
    assert verdict(0.50, 0.27)["verdict"] == "not reproduced"  # beyond the bound even after the spread
    assert verdict(0.11, 0.04)["verdict"] == "inconclusive"


def test_validation_claim_is_under_powered_when_a_perfect_model_would_miss_its_bound():
    """With each case's runs in the table, a bound that a perfect model would not read reproduced at the
    runs' noise (its 95% max over bound_test's lower threshold) cannot be shown: under-powered, unless the
    error is beyond what a model at the bound shows; quiet runs decide as before."""
    import math

    import pandas as pd
    from thinwire.analysis.claims import verdicts

    claim = {"id": "v", "source": "s", "statement": "s", "setup": "s", "rule": "at_most", "expected": 0.25,
             "tolerance": 0.0, "figure": "", "quantity": {"name": "validation_error", "stat": "max"}}

    def verdict(error, u, tolerance=0.0):
        if u == "noisy":  # 5 rounds at sd 0.2 in log: a perfect model's 95% max is ~44%
            rng = np.random.default_rng(0)
            errors = [";".join(f"{v:.9g}" for v in np.exp(rng.normal(0.0, 0.2, 5)) - 1) for _ in range(36)]
        else:
            errors = rounds(-u, 0.0, u)
        study = pd.DataFrame({"error": [error] * 36, "measured_spread": 0.01, "bandwidth": "100mbit",
                              "label": "sgd", "predicted_s": 1.0, "measured_s": 1.0, "repeats": 3,
                              "round_errors": errors})
        return verdicts(pd.DataFrame(), [{**claim, "tolerance": tolerance}], {"validation": study}).iloc[0]

    noisy = verdict(0.02, "noisy")
    assert noisy["verdict"] == "inconclusive" and noisy["reason"].startswith("under-powered: needs a noise floor")
    assert "perfect model at these runs' noise" in noisy["evidence"]
    assert verdict(0.02, 0.001)["verdict"] == "reproduced"
    assert verdict(0.60, 0.001)["verdict"] == "not reproduced"
    assert verdict(0.60, "noisy")["verdict"] == "inconclusive"
    # the bound is the claim's, tolerance included
    assert "erring by the bound 0.75 shows" in verdict(0.02, "noisy", tolerance=0.5)["power"]
    # Powered runs are decided against their noise at the bound (bound_test), not against the spread
    # column (1% here, which would call 22% reproduced): at u = 3% bound_test's thresholds for a 25%
    # bound on the max are 20.5% and 29.7%, and a perfect model's 95% max, 3.7%, is under the lower one.
    between = verdict(0.22, 0.03)
    assert between["power"].startswith("powered") and between["verdict"] == "inconclusive"
    assert between["reason"].startswith("measured 0.22 is within the runs' noise about the bound")
    assert math.isnan(between["sem"])  # no standard error: the thresholds are in the reason
    assert verdict(0.10, 0.03)["verdict"] == "reproduced" and "in at most 5%" in verdict(0.10, 0.03)["reason"]
    assert verdict(0.40, 0.03)["verdict"] == "not reproduced"
    # the median: at u = 2% its thresholds for a 10% bound are 7.3% and 12.7% (floor 2.4%)
    median = {**claim, "expected": 0.10, "quantity": {"name": "validation_error", "stat": "median"}}

    def median_verdict(error, u):
        study = pd.DataFrame({"error": [error] * 36, "measured_spread": 0.01, "bandwidth": "100mbit",
                              "label": "sgd", "predicted_s": 1.0, "measured_s": 1.0, "repeats": 3,
                              "round_errors": rounds(-u, 0.0, u)})
        return verdicts(pd.DataFrame(), [median], {"validation": study}).iloc[0]["verdict"]

    assert [median_verdict(e, 0.02) for e in (0.03, 0.08, 0.12, 0.20)] == [
        "reproduced", "inconclusive", "inconclusive", "not reproduced"]  # 12%: 17 cases may err without limit
    assert verdict(0.21, 0.03)["verdict"] == "inconclusive"  # one case at 25% can show 20.5%: not shown within it


def test_validation_claim_power_is_a_perfect_model_reading_reproduced_and_a_refutation_needs_none():
    """Rounds whose noise puts a perfect model's 95% max (21%) under the 25% bound but over bound_test's lower
    threshold (15%): a perfect model would not read reproduced in 95% of resamples, so the claim is
    under-powered, and a small error reads inconclusive; an error beyond what a model at the bound shows
    still reads not reproduced. One run per case, or a value that is not finite, decides nothing."""
    import math

    import pandas as pd
    from thinwire.analysis.claims import verdicts

    from thinwire.validate import bound_test, noise_floor

    claim = {"id": "v", "source": "s", "statement": "s", "setup": "s", "rule": "at_most", "expected": 0.25,
             "tolerance": 0.0, "figure": "", "quantity": {"name": "validation_error", "stat": "max"}}
    rng = np.random.default_rng(3)

    def errors():
        return ";".join(f"{v:.9g}" for v in np.exp(rng.normal(0.0, 0.1, 5)) - 1)

    study = pd.DataFrame({"measured_spread": 0.01, "bandwidth": "100mbit", "label": "sgd", "measured_s": 1.0,
                          "repeats": 5, "predicted_s": 1.0, "round_errors": [errors() for _ in range(36)]})
    below, above = bound_test(study, "max", 0.25)
    assert below < noise_floor(study, "max") < 0.25  # powered under the old bar (the bound), not the new

    def verdict(error, table=study):
        return verdicts(pd.DataFrame(), [claim], {"validation": table.assign(error=error)}).iloc[0]

    small = verdict(0.05)
    assert small["verdict"] == "inconclusive" and small["reason"].startswith("under-powered: needs a noise floor <=")
    assert f"a value over {above:.3g} still reads not reproduced" in small["reason"]
    assert verdict(above * 1.1)["verdict"] == "not reproduced"
    one = verdict(0.05, study.assign(round_errors="0.0"))
    assert one["verdict"] == "inconclusive" and "more than one run per case" in one["reason"]
    assert "-inf" not in one["reason"]
    quiet = study.assign(round_errors="0;0;0")
    assert verdict(math.inf, quiet)["reason"] == "the measured value is not finite"


def test_the_verdict_figure_draws_no_standard_error_for_a_claim_judged_by_its_bound_test(tmp_path, monkeypatch):
    import math

    import pandas as pd
    from thinwire.analysis import evidence

    claim = {"id": "v", "rule": "at_most", "expected": 0.25, "tolerance": 0.0, "figure": "claim_pm_validation",
             "quantity": {"name": "validation_error", "stat": "max"}}
    study = pd.DataFrame({"label": ["topk", "sgd"], "bandwidth": "100mbit", "measured_s": [0.1, 0.02],
                          "predicted_s": [0.11, 0.018], "error": [0.1, -0.1], "measured_spread": 0.2,
                          "round_errors": ["0.1;0.05;0.2", "-0.1;-0.12;-0.05"]})
    seen = {}
    monkeypatch.setattr(evidence, "verdict_panel", lambda ax, claims, verdicts, sems: seen.update(sems))
    # the verdict row's sem is NaN (as claims.verdicts writes it); the figure must not fall back to the spread
    evidence.draw_one("claim_pm_validation", [claim], pd.DataFrame(), {"validation": study},
                      {"v": {"verdict": "inconclusive", "measured": 0.1, "expected": 0.25, "sem": math.nan}},
                      tmp_path / "f.png")
    assert math.isnan(seen["v"])


def test_a_round_runs_each_method_s_calibration_and_rates_back_to_back(tmp_path, monkeypatch):
    """measure_round: every setup (calibration, each rate) stands at once; link benchmarks first (only
    those missing), then method by method its calibration and its runs at every rate, the order rotated
    from method to method and round to round. Every rank runs its thread pools on its one core, whatever
    the thread variables of the caller (Snakemake sets its job's: 2)."""
    from thinwire.workloads import shaped

    import thinwire.validate as v
    from thinwire.launch import THREAD_VARS

    calls, threads = [], set()
    for var in THREAD_VARS:
        monkeypatch.setenv(var, "2")

    class FakeNet:
        def __init__(self, ranks, rate, prefix=None):
            self.rate = rate

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def popen(self, rank, argv, **kwargs):
            env = {**os.environ, **kwargs["env"]}  # as ShapedNet.popen passes it on
            threads.update(env[var] for var in THREAD_VARS)
            if rank == 0:
                what = argv[argv.index("--label") + 1] if "--label" in argv else "link"
                calls.append((what, v._rate_name(self.rate) if what == "link" else argv[argv.index("--out") + 1]))

    monkeypatch.setattr(shaped, "ShapedNet", FakeNet)
    monkeypatch.setattr(v, "_wait_all", lambda procs, what, timeout_s: None)
    sheet = {"workload": "digits-mlp", "steps": 6, "methods": [{"method": "sgd"}, {"method": "topk-ef", "label": "t"}]}
    work = tmp_path / "w"
    (work / "1000mbit").mkdir(parents=True)
    (work / "1000mbit" / "link.json").write_text("{}")  # measured in an earlier round
    result = v.measure_round(sheet, [100.0, 1000.0], work, rep=1)
    where = {str(work / "calibration" / "unshaped"): "calibration", str(work / "100mbit"): "100mbit",
             str(work / "1000mbit"): "1000mbit"}
    order = [(label, where[str(Path(out).parent.parent)]) if label != "link" else (label, out) for label, out in calls]
    assert order == [("link", "unshaped"), ("link", "100mbit"),
                     ("sgd", "100mbit"), ("sgd", "1000mbit"), ("sgd", "calibration"),  # round 2, method 1: shift 1
                     ("t", "1000mbit"), ("t", "calibration"), ("t", "100mbit")]  # method 2: shift 2
    assert result["100mbit"] == (work / "100mbit" / "link.json", [work / "100mbit" / "rep1" / "sgd",
                                                                   work / "100mbit" / "rep1" / "t"])
    assert set(result) == {"calibration", "100mbit", "1000mbit"}
    assert threads == {"1"}


@needs_netns
def test_tiny_sheet_calibrates_inside_the_namespaces(tmp_path):
    """`local` comes from a calibration run in unshaped namespaces behind the same bridge (not loopback),
    kept apart from the measured runs; the table has the case, and no namespace is left behind."""
    import yaml

    from thinwire.validate import validate

    sheet = tmp_path / "sheet.yaml"
    sheet.write_text(yaml.safe_dump({"workload": "digits-mlp", "workload_params": {"hidden": 32}, "steps": 6,
                                     "skip": 1, "rates_mbit": ["unshaped"], "repeats": 1, "timeout_s": 60,
                                     "run_timeout_s": 300, "methods": [{"method": "sgd", "label": "sgd"}]}))
    table = validate(sheet, tmp_path / "work", tmp_path / "v.csv", progress=False)
    assert (tmp_path / "work" / "calibration" / "unshaped" / "link.json").exists()
    assert (tmp_path / "work" / "calibration" / "unshaped" / "rep0" / "sgd" / "meta.json").exists()
    assert (tmp_path / "work" / "unshaped" / "rep0" / "sgd" / "meta.json").exists()
    assert len(table) == 1 and np.isfinite(table["error"]).all() and table["predicted_s"].iloc[0] > 0
    assert f"tw{os.getpid()}-" not in _namespaces()  # other engineers' namespaces may exist


def test_the_report_says_what_a_perfect_model_would_show_at_the_runs_noise():
    import pandas as pd
    from thinwire.analysis.report.pages import _validation_section

    validation = pd.DataFrame({"case": "c", "label": ["topk", "sgd"], "bandwidth": "100mbit", "local_s": 0.01,
                               "comm_predicted_s": 0.01, "comm_measured_s": 0.01, "predicted_s": [0.11, 0.018],
                               "measured_s": [0.1, 0.02], "error": [0.1, -0.1], "local_spread": 0.1,
                               "measured_spread": 0.1, "repeats": 3, "measured_runs_s": ["0.1;0.11;0.09", "1;1;1"],
                               "calibration_runs_s": ["0.1;0.1;0.12", "1;1;1"], "round_errors": ["0.1;0.05;0.2", "0;0;0"],
                               "error_spread": [0.14, 0.0]})
    html = _validation_section(validation)
    assert "A perfect model, wrong only by the noise of the runs it reads" in html
    assert "0.1;0.11;0.09" not in html and "0.1;0.05;0.2" not in html  # each run's time stays in the CSV
    assert "the rounds' predicted / measured spread by 7.0% (median; max 14.0%)" in html
    quiet = validation.assign(round_errors="0;0;0")
    assert "median |error| 0.0% (95% of resamples up to 0.0%)" in _validation_section(quiet)
    # and `thinwire validate` prints it
    from thinwire.validate import summary

    assert summary(quiet).endswith("a perfect model at these runs' noise: median 0.0%, max 0.0% (95% of resamples)")
    assert "perfect model" not in summary(quiet.assign(repeats=1))
