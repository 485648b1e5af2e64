"""PowerSGD (Vogels, Karimireddy and Jaggi, "PowerSGD: Practical Low-Rank Gradient Compression for
Distributed Optimization", NeurIPS 2019), as PyTorch ships it (torch.distributed.algorithms.
ddp_comm_hooks.powerSGD_hook).

Per worker, with error e (what past low-rank approximations left out):
    for the first `start_powersgd_iter` steps: all-reduce the gradient g, dense (no error feedback)
    then    p = e + g
    every parameter tensor of >= 2 dims is a matrix M (shape[0], rest) of p; it is compressed at rank
        r = min(n, m, rank) when n m > min_compression_rate (n + m) r, else sent whole with the vectors
    all-reduce the uncompressed coordinates (mean), in one buffer
    Q <- orthogonalise(Q)    (Q: the previous step's Q, warm start; a fresh draw at the first compressed step)
    P = M Q ;  all-reduce every P in one buffer (mean) ;  P <- orthogonalise(P)    (Gram-Schmidt)
    Q = M^T P ;  all-reduce every Q in one buffer (mean)
    M_hat = P Q^T          (the mean over workers of M's projection on P's columns)
    e = p - (M_hat, and the mean of the uncompressed coordinates)      (error feedback)
    x <- SGD with heavy-ball momentum (and weight decay) on the aggregate, as torch.optim.SGD
The paper's Algorithm 1 orthogonalises only P; orthogonalising the warm-started Q first, as the hook does,
leaves P's column space, and so the orthogonalised P, unchanged. Each rank sends, per compressed
matrix, (n + m) r values, and every uncompressed value once: that over the parameter count, times the
value bits, is the stated bits per parameter (the value bits in the dense steps).

Q's first draw, like the hook's: a numpy RandomState(seed) gives a torch seed, and torch.randn draws
each Q, (1, m, r) in the run's dtype, in the order DDP hands the matrices to the hook (the reverse of
the layout), grouped by shape; every worker draws the same Q. Without warm start every compressed step
draws anew.

`ddp_compat: true` follows the hook inside DistributedDataParallel with the whole model in one bucket
(workloads/ddp_hooks.py) where it differs from the paper only in rounding: the P buffer summed, not
averaged, QR instead of Gram-Schmidt above rank 2, the error feedback also on the uncompressed
coordinates (their local value minus the mean, which sums to 0 over the workers: the aggregate keeps),
and all three all-reduces issued even when one is empty, as the hook does. Without it the uncompressed
coordinates keep no error, as the paper's code does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import numpy as np
from array_api_compat import device as device_of
from thinwire.algorithms import wire
from thinwire.algorithms.comm import Communicator
from thinwire.algorithms.compress import ErrorFeedback, NoMemory
from thinwire.algorithms.registry import MethodBase, Oracle, check_step, register, segments


class Matrix(NamedTuple):
    """A compressed parameter tensor: its slice of the flat vector, its matrix shape and its rank."""

    start: int
    stop: int
    rows: int  # n = shape[0]
    cols: int  # m = the product of the other dimensions
    rank: int  # min(n, m, rank)


class Decoded:
    """The codec the error-feedback memory reads PowerSGD's message with: what it is handed is already
    the decoded aggregate (a low-rank approximation is only known after both all-reduces)."""

    def decompress(self, payload: Any, n: int, dtype: Any) -> Any:
        return payload


def should_compress(rows: int, cols: int, rank: int, min_compression_rate: float) -> bool:
    """The hook's rule: compress when the matrix is more than min_compression_rate times its factors."""
    return (rows + cols) * rank * min_compression_rate < rows * cols


def gram_schmidt(a: Any, epsilon: float = 0.0) -> Any:
    """Orthonormal columns of a (..., n, r), column by column (modified Gram-Schmidt, the hook's order):
    normalise column i, then remove it from every later column."""
    xp = wire.namespace(a)
    cols = [a[..., i:i + 1] for i in range(a.shape[-1])]
    for i in range(len(cols)):
        cols[i] = cols[i] / (xp.linalg.vector_norm(cols[i], axis=-2, keepdims=True) + epsilon)
        for j in range(i + 1, len(cols)):
            cols[j] = cols[j] - xp.sum(cols[i] * cols[j], axis=-2, keepdims=True) * cols[i]
    return xp.concat(cols, axis=-1)


def draw_qs(rng: np.random.RandomState, shapes: list[tuple[int, int]], dtype: str) -> list[np.ndarray]:
    """Standard normal (m, r) matrices, as the hook draws them: one torch seed from `rng`, then torch.randn
    (1, m, r) per matrix in `dtype`, on the CPU."""
    import torch

    gen = torch.Generator().manual_seed(int(rng.randint(1_000_000_000)))
    return [torch.randn((1, m, r), generator=gen, dtype=getattr(torch, dtype))[0].numpy() for m, r in shapes]


def _swap(a: Any) -> Any:
    xp = wire.namespace(a)
    return xp.matrix_transpose(a)


@register
class PowerSGD(MethodBase):
    name = "powersgd"
    # The 1 x 50 weight is compressed (rate 0.5 < 50 / 51) after two dense steps.
    tiny: ClassVar[dict[str, Any]] = {"lr": 0.5, "min_compression_rate": 0.5, "start_powersgd_iter": 2}

    @dataclasses.dataclass(frozen=True)
    class Config:
        lr: float = 0.1
        momentum: float = 0.9  # heavy-ball beta, on the aggregate (torch.optim.SGD's)
        weight_decay: float = 0.0
        rank: int = 1  # r, the hook's matrix_approximation_rank
        min_compression_rate: float = 2.0  # compress only matrices more than this many times their factors
        start_powersgd_iter: int = 0  # dense all-reduce for this many first steps (the hook's start_powerSGD_iter)
        warm_start: bool = True  # reuse the last Q (else a fresh draw every step)
        error_feedback: bool = True
        epsilon: float = 0.0  # added to column norms in the orthogonalisation (the hook's orthogonalization_epsilon)
        seed: int = 0  # of Q's draws (the hook's random_seed)
        ddp_compat: bool = False  # follow PyTorch's hook in one DDP bucket (see the module docstring)

        def __post_init__(self) -> None:
            check_step(self.lr, self.momentum, self.weight_decay)
            if self.rank < 1:
                raise ValueError(f"rank must be >= 1, got {self.rank}")
            if self.min_compression_rate < 0:
                raise ValueError(f"min_compression_rate must be >= 0, got {self.min_compression_rate}")
            if self.start_powersgd_iter < 0:
                raise ValueError(f"start_powersgd_iter must be >= 0, got {self.start_powersgd_iter}")
            if self.epsilon < 0:
                raise ValueError(f"epsilon must be >= 0, got {self.epsilon}")
            if self.ddp_compat and (self.error_feedback or self.warm_start) and self.start_powersgd_iter < 2:
                raise ValueError("ddp_compat needs start_powersgd_iter >= 2 with error feedback or warm start, as "
                                 f"the hook does (DDP rebuilds its buckets after step 1), got {self.start_powersgd_iter}")

    def __init__(self, config: Config, layout) -> None:
        super().__init__(config, layout)
        c = config
        self.memory = ErrorFeedback() if c.error_feedback else NoMemory()
        self.pieces: list[Matrix | tuple[int, int]] = []  # in layout order: a Matrix or a (start, stop) sent whole
        for s in segments(layout):
            rows, cols = (s.shape[0], math.prod(s.shape[1:])) if len(s.shape) >= 2 else (1, s.stop - s.start)
            rank = min(rows, cols, c.rank)
            compress = len(s.shape) >= 2 and should_compress(rows, cols, rank, c.min_compression_rate)
            self.pieces.append(Matrix(s.start, s.stop, rows, cols, rank) if compress else (s.start, s.stop))
        matrices = [p for p in self.pieces if isinstance(p, Matrix)]
        # The order of the P and Q buffers and of Q's draws, the hook's in DDP: the reverse of the layout
        # (the order gradients become ready), grouped by matrix shape, first seen first.
        order = list(reversed(matrices))
        shapes = list(dict.fromkeys((m.rows, m.cols) for m in order))
        self.matrices = [m for shape in shapes for m in order if (m.rows, m.cols) == shape]
        self.dense = [p for p in self.pieces if not isinstance(p, Matrix)]
        self.n_dense = sum(stop - start for start, stop in self.dense)
        self.compressed_values = sum((m.rows + m.cols) * m.rank for m in self.matrices) + self.n_dense

    def bits_per_parameter(self, value_bits: int, step: int) -> float:
        if step < self.config.start_powersgd_iter:
            return float(value_bits)
        return self.compressed_values * value_bits / self.n_params

    def init_state(self, x: Any, comm: Communicator) -> dict[str, Any]:
        zeros = comm.xp.zeros_like(x)
        return {"error": zeros, "momentum": zeros, "q": None, "step": 0,
                "rng": np.random.RandomState(self.config.seed)}

    def step(self, x: Any, state: dict[str, Any], oracle: Oracle, comm: Communicator):
        c, xp = self.config, comm.xp
        loss, g = oracle(x)
        error, qs = state["error"], state["q"]
        if state["step"] < c.start_powersgd_iter:
            aggregate = comm.all_reduce(g, op="avg")
        else:
            p = self.memory.compensate(error, g)
            aggregate, qs = self._aggregate(p, qs, state["rng"], comm)
            error = self.memory.update(p, aggregate, Decoded())
            if not c.ddp_compat and self.dense:
                error = xp.concat([error[..., piece.start:piece.stop] if isinstance(piece, Matrix)
                                   else xp.zeros_like(error[..., piece[0]:piece[1]]) for piece in self.pieces], axis=-1)
        if c.weight_decay:
            aggregate = aggregate + c.weight_decay * x
        m = c.momentum * state["momentum"] + aggregate
        new = {**state, "error": error, "momentum": m, "q": qs if c.warm_start else None, "step": state["step"] + 1}
        return x - c.lr * m, new, loss

    def _aggregate(self, p: Any, qs: list | None, rng: np.random.RandomState, comm: Communicator) -> tuple[Any, list]:
        """The mean over workers of p's uncompressed coordinates and of its matrices' rank-r
        approximations, in layout order, and the averaged Qs."""
        c, xp = self.config, comm.xp
        lead = p.shape[:-1]
        dense = None
        if self.dense or c.ddp_compat:
            parts = [p[..., start:stop] for start, stop in self.dense]
            dense = comm.all_reduce(xp.concat(parts, axis=-1) if parts else p[..., :0], op="avg")
        approx: dict[int, Any] = {}
        if self.matrices or c.ddp_compat:
            ms = [xp.reshape(p[..., m.start:m.stop], lead + (m.rows, m.cols)) for m in self.matrices]
            if qs is None:
                drawn = draw_qs(rng, [(m.cols, m.rank) for m in self.matrices], str(p.dtype).removeprefix("torch."))
                qs = [xp.broadcast_to(xp.asarray(q, device=device_of(p)), lead + q.shape) for q in drawn]
            qs = [self._orthogonalise(q) for q in qs]
            ps = self._all_reduce_factors([mat @ q for mat, q in zip(ms, qs)], "sum" if c.ddp_compat else "avg", p, comm)
            ps = [self._orthogonalise(pm) for pm in ps]
            qs = self._all_reduce_factors([_swap(mat) @ pm for mat, pm in zip(ms, ps)], "avg", p, comm)
            approx = {m.start: xp.reshape(pm @ _swap(q), lead + (m.stop - m.start,))
                      for m, pm, q in zip(self.matrices, ps, qs)}
        out, at = [], 0
        for piece in self.pieces:
            if isinstance(piece, Matrix):
                out.append(approx[piece.start])
            else:
                out.append(dense[..., at:at + piece[1] - piece[0]])
                at += piece[1] - piece[0]
        return xp.concat(out, axis=-1), qs

    def _all_reduce_factors(self, factors: list, op: str, like: Any, comm: Communicator) -> list:
        """All-reduce P (or Q) factors (..., k, r) in one flat buffer; return them in their shapes."""
        xp = comm.xp
        lead = like.shape[:-1]
        flat = [xp.reshape(f, lead + (-1,)) for f in factors]
        reduced = comm.all_reduce(xp.concat(flat, axis=-1) if flat else like[..., :0], op=op)
        out, at = [], 0
        for f in factors:
            size = math.prod(f.shape[-2:])
            out.append(xp.reshape(reduced[..., at:at + size], f.shape))
            at += size
        return out

    def _orthogonalise(self, a: Any) -> Any:
        if self.config.ddp_compat and a.shape[-1] > 2:  # the hook switches to QR above rank 2
            return wire.namespace(a).linalg.qr(a)[0]
        return gram_schmidt(a, self.config.epsilon)

    def diagnostics(self, state: dict[str, Any]) -> dict[str, float]:
        return {"compressed_matrices": float(len(self.matrices)), "uncompressed_values": float(self.n_dense)}

