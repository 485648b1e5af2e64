"""onebit-adam's compressed all-reduce is bit-identical to its implementation before issue 15's speed-up
(a frozen copy below): both modes, numpy and torch, simulated workers (a leading axis) and padded
chunks, over successive calls that carry the error feedback, on inputs with exact zeros and -0.0."""

import math
from typing import Any

import array_api_compat.numpy as xp_np
import array_api_compat.torch as xp_torch
import numpy as np
import pytest
import torch
from array_api_compat import array_namespace
from array_api_compat import device as device_of
from thinwire.algorithms import bits, wire
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.onebit_adam import OnebitAdam
from thinwire.algorithms.registry import get_method, make_config
from thinwire.simulators.simcomm import SimComm


# --- frozen copy of algorithms/onebit_adam.py's compressed all-reduce before the speed-up ---------
def _pack_signs(z: Any) -> Any:
    """Sign bits of z along the last axis, bit 1 for z >= 0 (sign(0) = +1), packed 8 to a byte."""
    xp = array_namespace(z)
    return bits.pack(xp.astype(z >= 0, xp.uint8), 1)


def _unpack_signs(buf: Any, n: int, dtype: Any) -> Any:
    xp = array_namespace(buf)
    return xp.astype(bits.unpack(buf, 1, n), dtype) * 2 - 1


def _signs(z: Any) -> Any:
    xp = array_namespace(z)
    return xp.astype(z >= 0, z.dtype) * 2 - 1


class Frozen(OnebitAdam):
    def compressed_average(self, m: Any, state: dict[str, Any], comm: Communicator) -> dict[str, Any]:
        """The compressed average of the workers' momenta m, thinwire's default mode (see the docstring)."""
        xp, p, d = comm.xp, comm.world_size, m.shape[-1]
        (block,) = self.blocks(p)
        n, lead = block.chunk, m.shape[:-1]
        # Real coordinates per chunk, for every chunk (worker side) and for the chunks this process serves.
        real = np.clip(d - n * np.arange(p), 0, n)
        counts = xp.asarray(np.maximum(real, 1)[:, None].astype(np.float64), dtype=m.dtype, device=device_of(m))
        served = np.asarray([real[r] for r in comm.workers])
        mask = xp.reshape(xp.asarray((np.arange(n) < served[:, None]).astype(np.float64), dtype=m.dtype,
                                     device=device_of(m)), lead + (n,))
        served_counts = xp.reshape(xp.asarray(np.maximum(served, 1).astype(np.float64), dtype=m.dtype,
                                              device=device_of(m)), lead + (1,))

        z = m + state["error"]
        chunks = xp.reshape(wire.pad_last(z, block.padded), lead + (p, n))
        scales = xp.sqrt(xp.sum(chunks * chunks, axis=-1, keepdims=True) / counts)
        error = z - xp.reshape(scales * _signs(chunks), lead + (block.padded,))[..., :d]
        received = comm.all_to_all(wire.pack([_pack_signs(chunks), scales]))
        zbar = (xp.mean(self._decode(received, n, m.dtype), axis=-2) + state["server_error"]) * mask
        server_scale = xp.sqrt(xp.sum(zbar * zbar, axis=-1, keepdims=True) / served_counts)
        server_error = zbar - server_scale * _signs(zbar) * mask
        gathered = comm.all_gather(wire.pack([_pack_signs(zbar), server_scale]), sharded=True)
        average = xp.reshape(self._decode(gathered, n, m.dtype), lead + (block.padded,))[..., :d]
        return {"m": average, "error": error, "server_error": server_error}

    def _compat_average(self, m: Any, state: dict[str, Any], comm: Communicator) -> dict[str, Any]:
        """DeepSpeed 0.19.6's CompressedBackend.compressed_allreduce, tensor by tensor."""
        xp, p = comm.xp, comm.world_size
        lead = m.shape[:-1]
        out, errors, server_errors = [], [], []
        w = s = 0
        for block in self.blocks(p):
            n = block.chunk
            buf = wire.pad_last(m[..., block.start:block.stop], block.padded) + state["error"][..., w:w + block.padded]
            scale = xp.linalg.vector_norm(buf, axis=-1, keepdims=True) / math.sqrt(block.padded)
            errors.append(buf - scale * _signs(buf))
            received = comm.all_to_all(_pack_signs(xp.reshape(buf, lead + (p, n))))
            scales = comm.all_gather(scale)
            served = xp.sum(_unpack_signs(received, n, m.dtype) * (scales * (1 / p)), axis=-2)
            served = served + state["server_error"][..., s:s + n]
            server_scale = xp.linalg.vector_norm(served, axis=-1, keepdims=True) / math.sqrt(n)
            server_errors.append(served - server_scale * _signs(served))
            signs = comm.all_gather(_pack_signs(served))
            server_scales = comm.all_gather(server_scale)
            chunks = _unpack_signs(signs, n, m.dtype) * server_scales
            out.append(xp.reshape(chunks, lead + (block.padded,))[..., :block.stop - block.start])
            w, s = w + block.padded, s + n
        return {"m": xp.concat(out, axis=-1), "error": xp.concat(errors, axis=-1),
                "server_error": xp.concat(server_errors, axis=-1)}

    @staticmethod
    def _decode(buf: Any, n: int, dtype: Any) -> Any:
        """(..., p, n/8 bytes of signs + one scale) -> (..., p, n) values scale * sign."""
        signs, scales = wire.unpack(buf, [(wire.dtype_like(buf, "uint8"), n // 8), (dtype, 1)])
        return _unpack_signs(signs, n, dtype) * scales


# ----------------------------------------------------------------------------------------------------

def _same(a, b) -> bool:
    a, b = (np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x) for x in (a, b))
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("xp", [xp_np, xp_torch], ids=["numpy", "torch"])
@pytest.mark.parametrize("compat", [False, True], ids=["default", "deepspeed_compat"])
@pytest.mark.parametrize("workers, layout", [
    (1, (("w", (1, 40)),)),
    (2, (("w", (1, 64)),)),                            # no padding
    (3, (("w", (1, 50)),)),                            # padded chunks
    (4, (("a", (3, 7)), ("b", (5,)), ("c", (1, 33)))),  # several tensors (DeepSpeed pads each)
])
def test_compressed_average_is_bit_identical_to_before(xp, compat, workers, layout):
    cls = get_method("onebit-adam")
    config = make_config(cls, {"deepspeed_compat": compat})
    new, old = cls(config, layout), Frozen(config, layout)
    d = new.n_params
    rng = np.random.default_rng(workers * 100 + d)
    dtypes = [np.float32, np.float64] if xp is xp_np else [torch.float32, torch.float64]
    for dtype in dtypes:
        comm_new, comm_old = SimComm(workers, xp), SimComm(workers, xp)
        zeros = xp.zeros((workers, d), dtype=dtype)
        s_new, s_old = new.init_state(zeros, comm_new), old.init_state(zeros, comm_old)
        for call in range(5):
            m = rng.normal(size=(workers, d))
            m[:, ::7] = 0.0
            m[:, 3::11] = -0.0
            if call == 0:
                m[:] = 0.0  # with no error yet: scales 0, and exact zeros (sign +1) at the server too
            if call == 3:
                m[-1] = 0.0  # a worker whose whole momentum is zero
            m = xp.asarray(m.astype(np.float32 if dtype in (np.float32, torch.float32) else np.float64))
            step = new._compat_average if compat else new.compressed_average
            frozen = old._compat_average if compat else old.compressed_average
            got, want = step(m, s_new, comm_new), frozen(m, s_old, comm_old)
            for key in ("m", "error", "server_error"):
                assert _same(got[key], want[key]), (key, call, dtype)
            s_new.update({k: v for k, v in got.items() if k != "m"})
            s_old.update({k: v for k, v in want.items() if k != "m"})
        assert comm_new.log.records == comm_old.log.records


def _ranks_compare(rank: int, port: int, sizes: tuple[int, ...]) -> None:
    import os

    from thinwire.workloads.torchcomm import TorchComm

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    comm = TorchComm(torch.device("cpu"), timeout_s=60)
    try:
        for d in sizes:
            for compat in (False, True):
                cls = get_method("onebit-adam")
                config = make_config(cls, {"deepspeed_compat": compat})
                new, old = cls(config, (("w", (d,)),)), Frozen(config, (("w", (d,)),))
                s_new, s_old = new.init_state(torch.zeros(d), comm), old.init_state(torch.zeros(d), comm)
                gen = torch.Generator().manual_seed(rank)
                for call in range(3):
                    m = torch.zeros(d) if call == 0 else torch.randn(d, generator=gen)
                    step = new._compat_average if compat else new.compressed_average
                    frozen = old._compat_average if compat else old.compressed_average
                    got, want = step(m, s_new, comm), frozen(m, s_old, comm)
                    for key in ("m", "error", "server_error"):
                        assert _same(got[key], want[key]), (rank, d, compat, call, key)
                    s_new.update({k: v for k, v in got.items() if k != "m"})
                    s_old.update({k: v for k, v in want.items() if k != "m"})
    finally:
        comm.close()


def test_bit_identical_on_two_real_ranks():
    """The real-rank shapes (no worker axis) over gloo: padded (50) and unpadded (64) vectors."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ranks_compare, args=(port, (50, 64, 1000)), nprocs=2, join=True)
