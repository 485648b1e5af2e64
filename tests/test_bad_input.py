"""Bad input, table-driven: the command line, runs sheets and cluster files. Every case ends in one line
that names the parameter, a non-zero exit, and nothing written. The CLI runs in this process
(thinwire.cli.main), so the table costs seconds; a few cases go through the installed console script
to prove the wiring; runs sheets are also fuzzed (hypothesis) for "never a traceback"."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from launch import ROOT, call, thinwire
from thinwire.algorithms.comm import ThinwireError

from thinwire.cli import main

CLUSTER = ROOT / "simulators" / "clusters" / "this-machine.yaml"
RUN = ["sgd", "--workload", "lsq", "--steps", "3", "--quiet"]

# (argv with OUT for the output path, words the one error line must contain)
CLI = [
    (["sim", *RUN, "--steps", "0", "--out", "OUT"], ["steps"]),
    (["sim", *RUN, "--steps", "x", "--out", "OUT"], ["steps", "integer"]),
    (["sim", *RUN, "--steps", "2.5", "--out", "OUT"], ["steps", "integer"]),
    (["sim", *RUN, "--seed", "-1", "--out", "OUT"], ["seed", ">= 0"]),
    (["sim", *RUN, "--eval-every", "0", "--out", "OUT"], ["eval_every"]),
    (["sim", *RUN, "--workers", "0", "--out", "OUT"], ["workers"]),
    (["sim", *RUN, "--workers", "-3", "--out", "OUT"], ["workers"]),
    (["sim", *RUN, "--dtype", "float16", "--out", "OUT"], ["dtype"]),
    (["sim", *RUN, "--array-lib", "jax", "--out", "OUT"], ["--array-lib"]),
    (["sim", *RUN, "--param", "lr", "--out", "OUT"], ["--param", "KEY=VALUE"]),
    (["sim", *RUN, "--param", "=1", "--out", "OUT"], ["--param", "KEY=VALUE"]),
    (["sim", *RUN, "--param", "lr=fast", "--out", "OUT"], ["'lr'"]),
    (["sim", *RUN, "--param", "lr=inf", "--out", "OUT"], ["'lr'", "finite"]),
    (["sim", *RUN, "--param", "lr=-1", "--out", "OUT"], ["lr"]),
    (["sim", *RUN, "--param", "lrr=1", "--out", "OUT"], ["'lrr'"]),
    (["sim", *RUN, "--wparam", "dim=abc", "--out", "OUT"], ["'dim'"]),
    (["sim", *RUN, "--wparam", "dim=10.5", "--out", "OUT"], ["'dim'"]),
    (["sim", *RUN, "--wparam", "dimm=3", "--out", "OUT"], ["'dimm'"]),
    (["sim", *RUN, "--wparam", "dim=nan", "--out", "OUT"], ["'dim'"]),
    (["sim", "nope", "--workload", "lsq", "--out", "OUT"], ["'nope'"]),
    (["sim", "sgd", "--workload", "nope", "--out", "OUT"], ["'nope'"]),
    (["sim", "sgd", "--out", "OUT"], ["--workload"]),
    (["sim", "topk-ef", "--workload", "lsq", "--param", "density=0", "--out", "OUT"], ["density"]),
    (["sim", "sdp", "--workload", "lsq", "--workers", "4", "--param", "ranks_per_node=3", "--out", "OUT"],
     ["ranks_per_node=3"]),
    (["sim", "onebit-adam", "--workload", "lsq", "--steps", "3", "--param", "freeze_step=10", "--out", "OUT"],
     ["freeze_step"]),
    (["run", *RUN, "--timeout", "0", "--out", "OUT"], ["timeout"]),
    (["run", *RUN, "--timeout", "-1", "--out", "OUT"], ["timeout"]),
    (["run", *RUN, "--timeout", "inf", "--out", "OUT"], ["timeout", "finite"]),
    (["run", *RUN, "--busbw-mb", "-1", "--out", "OUT"], ["busbw-mb"]),
    (["run", *RUN, "--world-size", "0", "--out", "OUT"], ["world-size"]),
    (["run", *RUN, "--backend", "nccl2", "--out", "OUT"], ["backend"]),
    (["run", *RUN, "--inject-failure", "1:2:explode", "--out", "OUT"], ["--inject-failure"]),
    (["run", *RUN, "--inject-failure", "a:2:nan", "--out", "OUT"], ["--inject-failure"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--bandwidth", "0", "--out", "OUT"], ["--bandwidth", "> 0"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--bandwidth", "-1", "--out", "OUT"], ["--bandwidth"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--bandwidth", "fast", "--out", "OUT"], ["--bandwidth"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--target-params", "-1", "--out", "OUT"], ["--target-params"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--flops-per-step", "-1", "--out", "OUT"], ["--flops-per-step"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--tokens-per-step", "0", "--out", "OUT"], ["--tokens-per-step"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--buckets", "0", "--out", "OUT"], ["--buckets"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--speedup", "0", "--out", "OUT"], ["--speedup"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--target-loss-factor", "0.5", "--out", "OUT"],
     ["--target-loss-factor"]),
    (["model", "RUNDIR", "--cluster", "NOFILE", "--out", "OUT"], ["NOFILE"]),
    (["model", "NOTARUN", "--cluster", str(CLUSTER), "--out", "OUT"], ["NOTARUN", "not a thinwire run directory"]),
    (["model", "RUNDIR", "--cluster", str(CLUSTER), "--baseline", "nope", "--summary", "OUT", "--out", "OUT"],
     ["--baseline nope"]),
    (["study", "quantizers", "--draws", "2", "--out", "OUT"], ["draws"]),
    (["study", "quantizers", "--draws", "0", "--out", "OUT"], ["--draws"]),
    (["study", "sign_rate", "--draws", "5", "--out", "OUT"], ["--draws"]),
    (["study", "zo_rate", "--horizons", "100", "--out", "OUT"], ["horizons"]),
    (["study", "zo_rate", "--seeds", "0", "--out", "OUT"], ["--seeds"]),
    (["study", "nope", "--out", "OUT"], ["nope"]),
    (["check", "NOFILE"], ["NOFILE"]),
]


def _assert_one_line(code: int, err: str, words: list[str]) -> None:
    assert code not in (0, None), err
    assert err.startswith("thinwire: error:") and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "sim-sgd"
    assert main(["sim", *RUN, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("argv, words", CLI, ids=[" ".join(a[:1] + a[a.index("--out") - 2:a.index("--out")])
                                                  if "--out" in a else " ".join(a) for a, _ in CLI])
def test_bad_command_line(argv, words, tmp_path, capsys, run_dir):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notarun").mkdir()
    subs = {"OUT": str(work / "out"), "RUNDIR": str(run_dir), "NOFILE": str(work / "missing.yaml"),
            "NOTARUN": str(work / "notarun")}
    argv = [subs.get(a, a) for a in argv]
    words = [subs.get(w, w) for w in words]
    _assert_one_line(*call(argv, capsys), words)
    assert sorted(p.name for p in work.iterdir()) == ["notarun"]  # nothing written


GOOD = {"runs": [{"name": "t", "mode": "sim", "workload": "lsq", "steps": 5,
                  "methods": [{"method": "sgd"}, {"method": "topk-ef", "params": {"density": 0.1}}]}]}


def _with(path: str, value) -> dict:
    """GOOD with the key at `path` (dots; [i] for list items) set to value (None: removed)."""
    sheet = copy.deepcopy(GOOD)
    keys = path.split(".")
    node = sheet
    for k in keys[:-1]:
        node = node[int(k[1:-1])] if k.startswith("[") else node.setdefault(k, {})
    last = keys[-1]
    if value is None:
        del node[last]
    elif last.startswith("["):
        node[int(last[1:-1])] = value
    else:
        node[last] = value
    return sheet


# (sheet, words the one error line must contain)
SHEETS = [
    ({"results": "r", "reports": "p"}, ["'runs' is a required property"]),
    (_with("runs", []), ["config.runs"]),
    (_with("runs.[0].mode", "both"), ["config.runs[0].mode"]),
    (_with("runs.[0].steps", 0), ["config.runs[0].steps"]),
    (_with("runs.[0].steps", "ten"), ["config.runs[0].steps"]),
    (_with("runs.[0].seeds", [-1]), ["config.runs[0].seeds[0]"]),
    (_with("runs.[0].world_size", 0), ["config.runs[0].world_size"]),
    (_with("runs.[0].dtype", "float16"), ["config.runs[0].dtype"]),
    (_with("runs.[0].eval_every", 0), ["config.runs[0].eval_every"]),
    (_with("runs.[0].sedds", [1]), ["'sedds'"]),
    (_with("runs.[0].name", "a b"), ["config.runs[0].name"]),
    (_with("runs.[0].workload", "nope"), ["config.runs[0]", "'nope'"]),
    (_with("runs.[0].methods.[0].method", "nope"), ["config.runs[0]", "'nope'"]),
    (_with("runs.[0].methods.[1].params", {"density": 2}), ["config.runs[0]", "density"]),
    (_with("runs.[0].methods.[0].params", {"lr": float("inf")}), ["config.runs[0].methods[0].params.lr", "finite"]),
    (_with("runs.[0].methods.[0].params", {"lr": float("nan")}), ["params.lr", "finite"]),
    (_with("runs.[0].methods.[0].params", {"lr": "inf"}), ["'lr'", "finite"]),
    (_with("runs.[0].methods.[1].label", "sgd"), ["run ids repeat"]),
    (_with("runs.[0].resources", {"nodes": 2}), ["simulator runs are one process"]),
    (_with("collective_timeout_s", 0), ["config.collective_timeout_s"]),
    (_with("run_timeout_s", -5), ["config.run_timeout_s"]),
    (_with("launcher", "pbs"), ["config.launcher"]),
    (_with("studies", ["nope"]), ["config.studies[0]"]),
    (_with("studies", ["sign_rate", "sign_rate"]), ["names a study twice"]),
    (_with("studies", [{"name": "zo_rate", "horizons": [100]}]), ["config.studies[0]"]),
    (_with("studies", [{"name": "quantizers", "seeds": 3}]), ["quantizers", "--seeds"]),
    (_with("model", {"clusters": []}), ["config.model.clusters"]),
    (_with("model", {"clusters": ["c"], "bandwidths_gbps": [0]}), ["config.model.bandwidths_gbps[0]"]),
    (_with("model", {"clusters": ["c"], "target_loss_factor": 0.5}), ["config.model.target_loss_factor"]),
    (_with("model", {"clusters": ["c"], "speedupz": [2]}), ["'speedupz'"]),
    ([1, 2, 3], ["a runs sheet is a mapping"]),
    ("just text", ["a runs sheet is a mapping"]),
]


@pytest.mark.parametrize("sheet, words", SHEETS, ids=[str(i) for i in range(len(SHEETS))])
def test_bad_runs_sheet(sheet, words, tmp_path, capsys):
    path = tmp_path / "sheet.yaml"
    path.write_text(yaml.safe_dump(sheet))
    before = sorted(tmp_path.iterdir())
    _assert_one_line(*call(["check", str(path)], capsys), words)
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("text, words", [
    ("runs: [", ["not YAML", "line"]),
    ("runs:\n\t- x", ["not YAML"]),
    (b"\xff\xfe\x00garbage", ["not UTF-8"]),
])
def test_unreadable_runs_sheet(text, words, tmp_path, capsys):
    path = tmp_path / "sheet.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    _assert_one_line(*call(["check", str(path)], capsys), words)


BASE_CLUSTER = yaml.safe_load(CLUSTER.read_text())
CLUSTERS = [
    ({"nodes": 0}, ["nodes"]), ({"nodes": -2}, ["nodes"]), ({"nodes": 1.5}, ["nodes", "integer"]),
    ({"gpus_per_node": 0}, ["gpus_per_node"]), ({"sustained_tflops": 0}, ["sustained_tflops"]),
    ({"sustained_tflops": "a lot"}, ["sustained_tflops"]), ({"sustained_tflops": None}, ["sustained_tflops"]),
    ({"tiers": {"intra": {"bandwidth_gbps": 1, "latency_us": -1}, "inter": {"bandwidth_gbps": 1, "latency_us": 1}}},
     ["tiers.intra.latency_us"]),
    ({"tiers": {"intra": {"bandwidth_gbps": 1, "latency_us": 1}}}, ["tiers.inter"]),
    ({"tiers": {"intra": {"bandwidth_gbps": 1, "latency_us": 1}, "inter": {"bandwidth_gbps": float("inf"),
                                                                          "latency_us": 1}}},
     ["tiers.inter.bandwidth_gbps"]),
    ({"name": None}, ["name"]), ({"codec_values_per_s": {"dgc": -1}}, ["codec_values_per_s.dgc"]),
    ({"algorithm": "bus"}, ["algorithm"]), ({"colour": "red"}, ["colour"]),
]


@pytest.mark.parametrize("change, words", CLUSTERS, ids=[str(i) for i in range(len(CLUSTERS))])
def test_bad_cluster_file(change, words, tmp_path, capsys, run_dir):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({**BASE_CLUSTER, **change}))
    out = tmp_path / "model" / "m.csv"
    _assert_one_line(*call(["model", str(run_dir), "--cluster", str(path), "--out", str(out)], capsys),
                     [str(path), *words])
    assert not out.parent.exists()


def test_a_cluster_file_that_is_not_a_mapping(tmp_path, capsys, run_dir):
    path = tmp_path / "cluster.yaml"
    for text in ("- 1\n- 2\n", "nodes: [\n"):
        path.write_text(text)
        _assert_one_line(*call(["model", str(run_dir), "--cluster", str(path), "--out", str(tmp_path / "m.csv")],
                                capsys), [str(path)])


def test_the_table_is_large_enough():
    assert len(CLI) + len(SHEETS) + len(CLUSTERS) >= 40


@pytest.mark.parametrize("args, words", [
    (["sim", *RUN, "--steps", "0"], ["steps"]),
    (["run", *RUN, "--timeout", "0"], ["timeout"]),
    (["model", "NOTARUN", "--cluster", str(CLUSTER)], ["not a thinwire run directory"]),
])
def test_the_console_script_reports_the_same_way(tmp_path, args, words):
    (tmp_path / "notarun").mkdir()
    args = [str(tmp_path / "notarun") if a == "NOTARUN" else a for a in args]
    proc = thinwire(*args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    _assert_one_line(proc.returncode, proc.stderr, words)
    assert not (tmp_path / "out").exists()


# Fuzzing: whatever a runs sheet holds, reading it is a result or one ThinwireError line, never a traceback.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["sim", "real", "sgd", "topk-ef", "lsq", "logreg", "gloo",
                                                           "mpi", "nccl", "float32", "quantizers"]))
KEYS = st.sampled_from(["runs", "name", "mode", "workload", "methods", "method", "params", "label", "seeds", "steps",
                        "world_size", "backends", "resources", "nodes", "gpus_per_node", "studies", "model",
                        "clusters", "lr", "density", "dtype", "eval_every", "workload_params", "dim", "x"])
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=12)


def _never_a_traceback(sheet) -> None:
    from thinwire.config import load

    try:
        load(sheet)
    except ThinwireError as e:
        assert str(e) and "\n" not in " ".join(str(e).split())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=5))
def test_fuzzed_sheets_never_traceback(sheet):
    _never_a_traceback(sheet)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_entries_of_a_good_sheet_never_traceback(data):
    """A valid sheet with one key of its entry or method replaced by anything."""
    sheet = copy.deepcopy(GOOD)
    where = data.draw(st.sampled_from([sheet["runs"][0], sheet["runs"][0]["methods"][0], sheet]))
    where[data.draw(KEYS)] = data.draw(VALUES)
    _never_a_traceback(sheet)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_bytes_never_traceback(tmp_path_factory, blob):
    from thinwire.config import load

    path = tmp_path_factory.mktemp("fuzz") / "sheet.yaml"
    path.write_bytes(blob)
    try:
        load(path)
    except ThinwireError:
        pass
