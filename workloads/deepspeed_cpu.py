"""CPU adapters that let DeepSpeed 0.19.6's own 1-bit optimizers run, unchanged, on the CPU accelerator.

DeepSpeed's 1-bit optimizers do not run on a CPU as shipped (../shared/notes/deepspeed-cpu.md): its
`nccl` and `mpi` comm backends need cupy on CUDA, and its `compressed` backend, the one that works over
any torch.distributed backend, (1) loads a packbits op that exists only for Intel XPU and (2) all-gathers
0-dim scales into (1,)-shaped receive buffers, which gloo refuses (NCCL accepts it). Two adapters, and
nothing else, make DeepSpeed's real compressed all-reduce run here:

1. a bit packer with the XPU op's interface, over numpy.packbits: most significant bit first, bit 1 for
   a value >= 0 (the sign(0) -> +1 that the backend's error feedback assumes), unpacked to +-1.0;
2. the all-gathers of `deepspeed.runtime.comm.compressed` hand a 0-dim tensor over as shape (1,).

And one that only saves time: on the CPU, `deepspeed.comm` compiles a shared-memory op at start-up
(1.5-2.5 min on a fresh machine) that serves only `inference_all_reduce`, which training never calls;
(3) marks that op incompatible, so DeepSpeed skips it as it does on machines that cannot build it.

`apply()` installs them only when DeepSpeed's accelerator is the CPU (on CUDA, DeepSpeed runs as is
with its nccl backend), and refuses when DeepSpeed's internals are not the ones these adapters were
written against.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import numpy as np
import torch
from thinwire.algorithms.comm import ThinwireError

VERSION = "0.19.6"


class NumpyPacker:
    """The interface of DeepSpeed's XPU packbits op (csrc/xpu/packbits/packing.cpp), on the host."""

    @staticmethod
    def packbits(tensor: torch.Tensor, input_size: int, rank: int) -> torch.Tensor:
        bits = (tensor.detach().reshape(-1)[:input_size] >= 0).numpy()
        return torch.from_numpy(np.packbits(bits, bitorder="big"))

    @staticmethod
    def unpackbits(tensor: torch.Tensor, input_size: int, rank: int) -> torch.Tensor:
        bits = np.unpackbits(tensor.detach().reshape(-1)[:input_size].numpy(), bitorder="big")
        return torch.from_numpy(bits.astype(np.float32) * 2 - 1)


class _NumpyPackbitsBuilder:
    def load(self) -> NumpyPacker:
        return NumpyPacker()


class _VectorScaleComm:
    """deepspeed.comm, except that all_gather hands a 0-dim tensor (a scale) over as shape (1,)."""

    def __init__(self, comm: Any) -> None:
        self._comm = comm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comm, name)

    def all_gather(self, tensor_list: Any, tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self._comm.all_gather(tensor_list, tensor.reshape(1) if tensor.dim() == 0 else tensor,
                                     *args, **kwargs)


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise ThinwireError(f"DeepSpeed's internals changed ({what}): the CPU adapters in "
                            f"thinwire/workloads/deepspeed_cpu.py were written for deepspeed=={VERSION}; "
                            f"install it with pip install '.[deepspeed]' (see the README)")


def apply() -> bool:
    """Install the adapters if DeepSpeed runs on the CPU; return whether it did."""
    import deepspeed
    import deepspeed.comm
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cpu":
        return False
    from deepspeed.runtime.comm import compressed

    _expect(deepspeed.__version__ == VERSION, f"version {deepspeed.__version__}")
    backend = getattr(compressed, "CompressedBackend", None)
    _expect(backend is not None and hasattr(compressed, "PackbitsBuilder"),
            "runtime/comm/compressed.py has no CompressedBackend or PackbitsBuilder")
    if isinstance(compressed.dist, _VectorScaleComm):
        return True
    _expect(compressed.dist is deepspeed.comm, "compressed.py no longer calls deepspeed.comm")
    source = inspect.getsource(backend)
    _expect("PackbitsBuilder().load()" in source and "self.packer.packbits(" in source
            and "self.packer.unpackbits(" in source, "CompressedBackend no longer loads a packbits op")
    _expect("dist.all_gather(recvbuf_scale, worker_scale" in source,
            "CompressedBackend no longer all-gathers its scales as before")
    compressed.PackbitsBuilder = _NumpyPackbitsBuilder
    compressed.dist = _VectorScaleComm(deepspeed.comm)
    _skip_shared_memory_op(deepspeed)
    return True


def _skip_shared_memory_op(deepspeed: Any) -> None:
    ds_torch = importlib.import_module("deepspeed.comm.torch")  # the module, not the torch it imports

    _expect("__compatible_ops__.get(builder.NAME" in inspect.getsource(ds_torch.build_shm_op),
            "build_shm_op no longer consults deepspeed.ops.__compatible_ops__")
    _expect(ds_torch.TorchBackend.inference_all_reduce.__code__.co_filename == ds_torch.__file__,
            "deepspeed.comm.torch.TorchBackend has no inference_all_reduce")
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
