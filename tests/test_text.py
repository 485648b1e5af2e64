"""The byte-level text workloads (workloads/text.py): corpus, split, models, oracle, per-example
gradients, provenance in meta.json, and the claim quantity that compares their final losses."""

import hashlib
import json
import math
import platform

import numpy as np
import pandas as pd
import pytest
import torch
from conformance import case, sim_run
from launch import method_log
from thinwire.algorithms.comm import ThinwireError
from thinwire.algorithms.registry import segments
from thinwire.analysis.quantities import final_eval_loss_ratio
from thinwire.workloads.registry import make_workload
from thinwire.workloads.text import corpus

from thinwire.cli import main

MODELS = ("text-lstm", "text-gpt")
TINY = {"text-lstm": {"width": 16, "seq_len": 16, "batch_size": 4, "eval_bytes": 2048},
        "text-gpt": {"width": 16, "layers": 2, "heads": 2, "seq_len": 16, "batch_size": 4, "eval_bytes": 2048}}
# sha256 of the corpus as the venv's Python ships it; another Python may ship other topics.
KNOWN_SHA256 = {"3.11.7": "37d06970fc926e60c16dff401e441b84752446a36b6b64516c229fdec77e992c"}


@pytest.fixture(autouse=True)
def one_thread():
    """Models this small gain nothing from a second intra-op thread, and on a busy 2-core machine the
    float64 LSTM's many small parallel regions then wait on each other (40 s instead of 1 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(name, workers=2, seed=0, **extra):
    return make_workload(name, workers, seed, {**TINY[name], **extra})


def stacked(w, workers, dtype=torch.float64):
    return torch.as_tensor(np.broadcast_to(w.x0(), (workers, w.n_params)).copy(), dtype=dtype)


def test_corpus_is_the_sorted_pydoc_topics_and_its_hash_is_stable():
    from pydoc_data.topics import topics

    data, info = corpus()
    expected = "".join(topics[k] for k in sorted(topics)).encode("utf-8")
    assert data.tobytes() == expected and info["corpus_bytes"] == len(expected) > 400_000
    assert info["corpus_sha256"] == hashlib.sha256(expected).hexdigest()
    assert info["python"] == platform.python_version()
    if info["python"] in KNOWN_SHA256:
        assert info["corpus_sha256"] == KNOWN_SHA256[info["python"]]


@pytest.mark.parametrize("workers", [1, 3, 4])
def test_split_is_disjoint_contiguous_shards_and_a_held_out_tail(workers):
    data, _ = corpus()
    w = make_workload("text-lstm", workers, 0, {})
    n_train = len(data) - int(len(data) * 0.1)
    assert w.shards.shape[0] == workers and w.shards.size <= n_train
    assert w.shards.tobytes() == data[: w.shards.size].tobytes()  # shard w is the w-th slice, in order
    assert w.held_out.tobytes() == data[n_train:].tobytes()
    evaluated = w.eval_inputs.numpy().astype(np.uint8).tobytes()
    assert evaluated == w.held_out[: len(evaluated)].tobytes()


def test_batches_come_from_the_workers_own_shard_and_ranks_draw_the_same():
    w = make_workload("text-lstm", 3, 5, {"batch_size": 6})
    inputs, targets = w.oracle(None, None, "float32").next_batch()
    assert inputs.shape == targets.shape == (3, 6, 32)
    for worker in range(3):
        shard = w.shards[worker].tobytes()
        for a, y in zip(inputs[worker], targets[worker]):
            window = bytes(a.tolist()) + bytes(y[-1:].tolist())
            assert window in shard and bytes(y.tolist()) == window[1:]
    rank_inputs, rank_targets = w.oracle(None, 2, "float32").next_batch()
    assert torch.equal(rank_inputs, inputs[2]) and torch.equal(rank_targets, targets[2])


@pytest.mark.parametrize("name", MODELS)
def test_layout_names_every_parameter_tensor(name):
    w = make_workload(name, 2, 0, {})
    named = dict(w.model.named_parameters())
    assert [n for n, _ in w.layout] == list(named) and w.n_params == sum(p.numel() for p in named.values())
    assert w.x0().shape == (w.n_params,)
    matrices = [s.name for s in segments(w.layout) if len(s.shape) > 1]
    if name == "text-lstm":  # the softmax is tied to the embedding: no separate output matrix
        assert w.n_params == 83_200 and len(matrices) == 5
    else:  # a few hundred thousand parameters, as the quick runs want
        assert 100_000 < w.n_params < 500_000 and "wte.weight" in matrices


@pytest.mark.parametrize("name", MODELS)
def test_loss_at_initialisation_is_about_log_256(name):
    w = make_workload(name, 2, 0, {"eval_bytes": 4096})  # the default model sizes
    eval_loss, accuracy = w.evaluate(w.x0())
    loss, _ = w.oracle(None, None, "float64")(stacked(w, 2))
    assert abs(eval_loss - math.log(256)) < 0.25
    assert (loss - math.log(256)).abs().max() < 0.25
    assert 0 <= accuracy <= 1


@pytest.mark.parametrize("name, lr", [("text-lstm", 1.0), ("text-gpt", 0.5)])
def test_a_few_sgd_steps_lower_the_held_out_loss(name, lr):
    w = tiny(name)
    oracle = w.oracle(None, None, "float64")
    x = stacked(w, 2)
    start = w.evaluate(x.mean(0).numpy())[0]
    for _ in range(40):
        _, grad = oracle(x)
        x = x - lr * grad.mean(0)  # dense SGD: both workers apply the averaged gradient
    assert w.evaluate(x.mean(0).numpy())[0] < start - 0.5


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # torch.func has no LSTM batching rule
@pytest.mark.parametrize("name", MODELS)
def test_simulator_loop_vmap_and_one_rank_give_the_same_gradients(name):
    x = stacked(tiny(name), 2)
    x[1] += 0.01  # workers hold different models, as in local methods
    loop_loss, loop_grad = tiny(name).oracle(None, None, "float64")(x)
    vmap_loss, vmap_grad = tiny(name, worker_grads="vmap").oracle(None, None, "float64")(x)
    rank_loss, rank_grad = tiny(name).oracle(None, 1, "float64")(x[1])
    torch.testing.assert_close(vmap_loss, loop_loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(vmap_grad, loop_grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(rank_loss, loop_loss[1], rtol=0, atol=0)  # the same code on the same batch
    torch.testing.assert_close(rank_grad, loop_grad[1], rtol=0, atol=0)
    assert not torch.allclose(loop_grad[0], loop_grad[1])


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # torch.func has no LSTM batching rule
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("rank", [None, 1])
def test_per_example_gradients_average_to_the_batch_gradient(name, rank):
    w = tiny(name)
    x = stacked(w, 2)
    x = x if rank is None else x[rank]
    loss, per_example = w.oracle(None, rank, "float64").per_example(x)
    batch_loss, batch_grad = w.oracle(None, rank, "float64")(x)  # same seed: the same batch
    assert per_example.shape[-2:] == (4, w.n_params)
    torch.testing.assert_close(per_example.mean(-2), batch_grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(loss, batch_loss, rtol=0, atol=1e-12)
    norms = per_example.norm(dim=-1)
    assert (norms > 0).all() and (norms.mean(-1) >= batch_grad.norm(dim=-1)).all()  # CLARS's inequality


def test_bad_parameters_fail_with_one_line():
    for name, params, words in [("text-gpt", {"width": 10, "heads": 4}, "multiple of heads"),
                                ("text-lstm", {"worker_grads": "pmap"}, "loop or vmap"),
                                ("text-lstm", {"eval_bytes": 8}, "eval_bytes"),
                                ("text-lstm", {"depth": 3}, "no parameter 'depth'")]:
        with pytest.raises(ThinwireError, match=words) as e:
            make_workload(name, 2, 0, params)
        assert "\n" not in str(e.value)
    with pytest.raises(ThinwireError, match="fewer than seq_len"):
        make_workload("text-lstm", 10_000, 0, {"seq_len": 64})


def test_listed_and_the_run_records_what_it_trained_on(tmp_path, capsys):
    assert main(["list"]) == 0
    assert {"workload\ttext-lstm", "workload\ttext-gpt"} <= set(capsys.readouterr().out.splitlines())
    args = ["sim", "dgc", "--workload", "text-lstm", "--steps", "3", "--quiet", "--out", str(tmp_path / "run")]
    for k, v in TINY["text-lstm"].items():
        args += ["--wparam", f"{k}={v}"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["workload_provenance"] == corpus()[1]
    assert meta["workload_params"]["width"] == 16 and meta["status"] == "ok"


def test_final_eval_loss_ratio_pairs_seeds_and_counts_divergence():
    rows = []
    for label, seed, final, status in [("dense", 0, 2.0, "ok"), ("dense", 1, 2.2, "ok"),
                                       ("dgc", 0, 2.1, "ok"), ("dgc", 1, 2.2, "ok")]:
        rows += [{"experiment": "e", "mode": "sim", "label": label, "seed": seed, "step": s, "status": status,
                  "eval_loss": v} for s, v in ((0, 5.5), (5, np.nan), (9, final))]
    table = pd.DataFrame(rows)
    m = final_eval_loss_ratio(table, "e", "dgc", "dense")
    assert m.value == pytest.approx((2.1 / 2.0 + 1.0) / 2) and m.sem == pytest.approx(0.025)
    table.loc[(table["label"] == "dgc") & (table["seed"] == 1), "status"] = "diverged"
    assert final_eval_loss_ratio(table, "e", "dgc", "dense").value == math.inf
    assert final_eval_loss_ratio(table, "e", "topk", "dense") is None


def test_dgc_sends_sparse_matrices_and_dense_biases(tmp_path):
    """DGC on a tiny text-lstm (case dgc-text-lstm of tests/conformance.py): after the warm-up, k =
    ceil(0.05 numel) of the embedding (256 x 8) and the four LSTM matrices (32 x 8), as int32 index +
    float32 value; the 2 x 2 x 32 LSTM biases and the 256 decoder biases as float64."""
    sim = sim_run(case("dgc-text-lstm"), tmp_path)
    calls = method_log(sim)
    assert set(calls["op"]) == {"all_gather", "all_reduce"}
    last = calls[calls["step"] == 7].set_index("op")["sent"]
    assert last["all_gather"] == (103 + 4 * 13) * 8 and last["all_reduce"] == (4 * 32 + 256) * 8
    assert sim.meta["n_params"] == 256 * 8 + 4 * 32 * 8 + 4 * 32 + 256
