"""DeepSpeed's own ZeRO++ as a reference run for SDP4Bit's baselines (../shared/papers/sdp4bit.md): ZeRO-3,
qwZ (int8 weight all-gather, `zero_quantized_weights`) and hpZ (secondary weight partition inside a
node, `zero_hpz_partition_size`), on CPU ranks over gloo, with every collective's bytes counted where
DeepSpeed hands a tensor to torch.distributed.

    torchrun --standalone --nproc_per_node 4 -m thinwire.workloads.zeropp_reference --variant qwz --out r.json

Variants: zero3 (no compression), qwz, hpz (partition 2: "2 nodes x 2"), qwz-hpz. qgZ
(`zero_quantized_gradients`) needs CUDA kernels and >= 2 real nodes (on one node DeepSpeed silently
skips it: ../shared/notes/deepspeed-cpu.md), so it is not run here.
qwZ on the CPU: DeepSpeed's quantizer op is CUDA-only; `Int8Quantizer` is a torch per-group symmetric
int8 quantizer with the op's interface (int8 codes, one scale per group), so the bytes on the wire are
DeepSpeed's real int8 payloads. The model: a 3-layer MLP (64-256-256-32, 90,656 parameters; each rank's slice of every tensor a multiple of 8, as qwZ needs) on fixed
random data, fp32, Adam (torch's, `torch_adam`), 20 steps, the same data on every rank.
Output (rank 0): losses per step and bytes sent per collective, dtype and group size, summed over the
steps (the bytes a rank hands in, as thinwire's CommLog counts them).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
from pathlib import Path

import torch
from torch import nn

VARIANTS = {"zero3": {}, "qwz": {"zero_quantized_weights": True}, "hpz": {"zero_hpz_partition_size": 2},
            "qwz-hpz": {"zero_quantized_weights": True, "zero_hpz_partition_size": 2}}
# DeepSpeed hands torch.distributed this argument as the buffer a rank sends.
SENT_ARG = {"all_gather_into_tensor": 1, "reduce_scatter_tensor": 1, "all_reduce": 0, "all_gather": 1,
            "broadcast": 0, "all_to_all_single": 1}


class Int8Quantizer:
    """The interface of DeepSpeed's CUDA quantizer op (csrc/quantization) in torch, on the host."""

    Symmetric = 0

    @staticmethod
    def quantize(param: torch.Tensor, groups: int, bits: int, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = param.float().reshape(groups, -1)
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny) / 127
        codes = torch.round(x / scale).clamp(-127, 127).to(torch.int8)
        return codes.reshape(-1), scale.reshape(-1)

    @staticmethod
    def dequantize(codes: torch.Tensor, scale: torch.Tensor, groups: int, bits: int, mode: int) -> torch.Tensor:
        return (codes.float().reshape(groups, -1) * scale.float().reshape(groups, 1)).reshape(-1).half()


def count_bytes(backend_cls: type, sent: collections.Counter) -> None:
    """Wrap DeepSpeed's torch backend so each collective adds the bytes of the buffer it sends."""
    for name, index in SENT_ARG.items():
        original = getattr(backend_cls, name)

        def wrapper(self, *args, _original=original, _name=name, _index=index, **kwargs):
            tensor = args[_index] if len(args) > _index else next(iter(kwargs.values()))
            if isinstance(tensor, list | tuple):
                tensor = tensor[0]
            group = kwargs.get("group")
            size = torch.distributed.get_world_size(group) if group is not None else self.get_world_size()
            key = f"{_name} {str(tensor.dtype).removeprefix('torch.')} group {size}"
            sent[key] += tensor.numel() * tensor.element_size()
            return _original(self, *args, **kwargs)

        setattr(backend_cls, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    from deepspeed.runtime.zero import partition_parameters
    from thinwire.workloads import deepspeed_cpu

    deepspeed_cpu.apply()
    partition_parameters.CUDAQuantizer.quantizer_cuda_module = Int8Quantizer()
    sent: collections.Counter = collections.Counter()
    count_bytes(importlib.import_module("deepspeed.comm.torch").TorchBackend, sent)  # the module, not torch
    deepspeed.init_distributed(dist_backend="gloo")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 32))
    config = {"train_batch_size": 32 * int(os.environ["WORLD_SIZE"]), "train_micro_batch_size_per_gpu": 32,
              "optimizer": {"type": "Adam", "params": {"lr": 1e-3, "torch_adam": True}},
              "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0,
                                    **VARIANTS[args.variant]}}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    data = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 64, generator=data), torch.randint(0, 10, (32,), generator=data)
    sent.clear()  # initialisation traffic is not a training step's
    losses = []
    for _ in range(args.steps):
        loss = nn.functional.cross_entropy(engine(x), y)
        engine.backward(loss)
        engine.step()
        losses.append(float(loss))
    if engine.global_rank == 0:
        n_params = sum(p.ds_numel for p in model.parameters())
        args.out.write_text(json.dumps({"variant": args.variant, "deepspeed": deepspeed.__version__,
                                        "n_params": n_params, "steps": args.steps, "losses": losses,
                                        "bytes_sent": dict(sent)}, indent=1))


if __name__ == "__main__":
    main()
