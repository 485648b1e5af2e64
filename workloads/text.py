"""text-lstm and text-gpt: byte-level language models on the CPython documentation topics.

The corpus ships with every Python (`pydoc_data.topics.topics`, about 465 KB of English technical
prose), so nothing is downloaded. The topics are concatenated in sorted key order and read as UTF-8
bytes (vocabulary 256). Its sha256 depends on the Python version; both are recorded in every run's
meta.json (`workload_provenance`), so a result says exactly what it trained on.

Split: the last `eval_fraction` of the bytes is held out; the rest is cut into one contiguous shard
per worker (worker w reads the w-th slice of the topics, so workers see different topics, as a data
loader without shuffling would give them). A batch is `batch_size` windows of `seq_len + 1` bytes at
random offsets in the worker's shard, drawn from one seeded stream that every rank reproduces. Each
window starts from a zero state (no hidden state is carried between batches). Eval loss is the mean
next-byte cross-entropy in nats per byte over non-overlapping `seq_len` windows of the held-out tail;
`metric` is next-byte accuracy (argmax) on the same bytes; bits per byte = eval loss / ln 2.

Validation split (tuning chooses on it, analysis/tuning.py), disjoint from the evaluated bytes: by
default the held-out bytes after the evaluated ones (when `eval_bytes` leaves some), at most as many
as are evaluated, so training and evaluation are exactly those of a run without it; with
`validation_bytes` > 0, the last validation_bytes of the training bytes are held back instead (the
shards shrink). Its loss is computed as the eval loss is.

Methods see the parameters as one flat vector in the model's named-parameter order (one segment per
tensor, so layer-wise methods see real layers); `loss` maps it back with torch.func.functional_call
and works under torch.func (grad, vmap). `per_example_grads` is vmap(grad) over the sequences of a
batch (CLARS needs per-example gradient norms).

    thinwire sim dgc --workload text-lstm --workers 4 --steps 600 --param density=0.001
    torchrun --standalone --nproc_per_node 2 -m thinwire run sgd --workload text-gpt --steps 200
    mpiexec -n 2 thinwire run sgd --workload text-lstm --backend mpi
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import platform
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 256


@functools.cache
def corpus() -> tuple[np.ndarray, dict[str, Any]]:
    """The corpus bytes and what identifies them."""
    from pydoc_data.topics import topics

    data = "".join(topics[key] for key in sorted(topics)).encode("utf-8")
    return np.frombuffer(data, dtype=np.uint8).copy(), {
        "corpus": "pydoc_data.topics.topics, sorted keys, UTF-8", "corpus_bytes": len(data),
        "corpus_sha256": hashlib.sha256(data).hexdigest(), "python": platform.python_version()}


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Data, batches and model size; LSTMConfig and GPTConfig give each model its defaults."""

    seq_len: int = 32  # bytes of context per window (the GPT's block size)
    batch_size: int = 8  # windows per worker per step
    width: int = 64  # embedding width (= LSTM hidden size)
    layers: int = 2
    heads: int = 4  # attention heads (text-gpt only)
    eval_fraction: float = 0.1
    eval_bytes: int = 0  # evaluate on the first eval_bytes of the held-out tail (0: all of it)
    validation_bytes: int = 0  # > 0: held back from the end of the training bytes (module docstring)
    # How the simulator computes its workers' gradients: "loop" runs torch.autograd once per worker;
    # "vmap" is torch.func.vmap(grad) over the worker axis (the digits pattern). They agree to
    # rounding; the loop is 3-4x faster for the LSTM on CPU in float32 (torch.func bypasses the fused
    # oneDNN LSTM kernel and has no batching rule for it), vmap may win on GPUs.
    worker_grads: str = "loop"

    def __post_init__(self) -> None:
        if min(self.seq_len, self.batch_size, self.width, self.layers, self.heads) < 1:
            raise ValueError("seq_len, batch_size, width, layers and heads must be >= 1")
        if self.eval_bytes < 0 or 0 < self.eval_bytes <= self.seq_len:
            raise ValueError(f"eval_bytes must be 0 (all) or more than seq_len, got {self.eval_bytes}")
        if self.validation_bytes < 0 or 0 < self.validation_bytes <= self.seq_len:
            raise ValueError(f"validation_bytes must be 0 (default split) or more than seq_len, got {self.validation_bytes}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")
        if self.worker_grads not in ("loop", "vmap"):
            raise ValueError(f"worker_grads must be loop or vmap, got {self.worker_grads!r}")


@dataclasses.dataclass(frozen=True)
class LSTMConfig(TextConfig):
    pass


@dataclasses.dataclass(frozen=True)
class GPTConfig(TextConfig):
    layers: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")


class LSTM(nn.Module):
    """Embedding, a multi-layer LSTM, and a softmax tied to the embedding (as the PTB model of
    DGC's Table 4) plus its own bias."""

    def __init__(self, c: TextConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, c.width)
        # Small embeddings keep the tied logits near zero: the loss starts at about log(256).
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.lstm = nn.LSTM(c.width, c.width, c.layers, batch_first=True)
        self.decoder_bias = nn.Parameter(torch.zeros(VOCAB))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embedding(idx))
        return h @ self.embedding.weight.T + self.decoder_bias


class CausalSelfAttention(nn.Module):
    def __init__(self, c: TextConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.qkv = nn.Linear(c.width, 3 * c.width)
        self.proj = nn.Linear(c.width, c.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape
        q, k, v = (z.view(b, t, self.heads, e // self.heads).transpose(1, 2) for z in self.qkv(x).split(e, -1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, e))


class Block(nn.Module):
    """Pre-LN transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, c: TextConfig) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(c.width), CausalSelfAttention(c)
        self.ln2 = nn.LayerNorm(c.width)
        self.mlp = nn.Sequential(nn.Linear(c.width, 4 * c.width), nn.GELU(), nn.Linear(4 * c.width, c.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer (GPT-2 shape, no dropout): token and position embeddings, pre-LN
    blocks, final LayerNorm, head tied to the token embedding. Initialised as nanoGPT/GPT-2."""

    def __init__(self, c: TextConfig) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, c.width), nn.Embedding(c.seq_len, c.width)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.width)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                # GPT-2 scales the residual projections by 1/sqrt(2 * layers).
                residual = name.endswith(("attn.proj.weight", "mlp.2.weight"))
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * c.layers) if residual else 0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[-1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T


MODELS = {"lstm": LSTM, "gpt": GPT}


class TextWorkload:
    prefers = "torch"

    def __init__(self, model: str, world_size: int, seed: int, config: TextConfig) -> None:
        self.kind, self.world_size, self.seed, self.config = f"text-{model}", world_size, seed, config
        data, self.provenance = corpus()
        n_train = len(data) - int(len(data) * config.eval_fraction)
        n_fit = n_train - config.validation_bytes
        per = n_fit // world_size
        if per < config.seq_len + 1:
            raise ValueError(f"{world_size} workers leave {per} bytes each, fewer than seq_len + 1 = {config.seq_len + 1}")
        self.shards = data[: per * world_size].reshape(world_size, per)  # contiguous, disjoint
        self.held_out = data[n_train:]
        evaluated = self.held_out[: config.eval_bytes or None]
        self.eval_inputs, self.eval_targets = _windows(evaluated, config.seq_len)
        if config.validation_bytes:
            validation = data[n_fit:n_train]
            where = "held back from the end of the training bytes"
        else:
            validation = self.held_out[len(evaluated):][:len(evaluated)]
            where = "of the held-out tail after the evaluated ones"
        self.validation_inputs, self.validation_targets = _windows(validation, config.seq_len)
        self.validation_split = f"{len(validation)} bytes {where}" if len(self.validation_inputs) else ""
        self.validation_hint = (" (eval_bytes reads the whole held-out tail: set eval_bytes smaller, or "
                                "workload_params.validation_bytes)")
        torch.manual_seed(seed)
        self.model = MODELS[model](config).double()
        self.layout = tuple((name, tuple(p.shape)) for name, p in self.model.named_parameters())
        self.n_params = sum(math.prod(s) for _, s in self.layout)

    def x0(self) -> np.ndarray:
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()]).numpy()

    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        sizes = [math.prod(shape) for _, shape in self.layout]
        return {name: part.view(shape) for (name, shape), part in zip(self.layout, flat.split(sizes))}

    def logits(self, flat: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.model, self._params(flat), (inputs,))

    def loss(self, flat: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-byte cross-entropy (nats) of a batch of windows (B, T) under parameters `flat`."""
        return F.cross_entropy(self.logits(flat, inputs).reshape(-1, VOCAB), targets.reshape(-1))

    def per_example_grads(self, flat: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, n_params): the gradient of each window's own mean loss; their mean is the batch gradient."""
        def one(f, a, y):
            return self.loss(f, a[None], y[None])

        # One copy of the parameters per window: torch's vmap fallback for the LSTM kernel fails when
        # the parameters are unbatched and the inputs batched.
        copies = flat.expand(inputs.shape[0], -1)
        return torch.func.vmap(torch.func.grad(one))(copies, inputs, targets)

    def oracle(self, xp: Any, rank: int | None, dtype: str, device: Any = None) -> TextOracle:
        return TextOracle(self, rank, device)  # the dtype is x's: the batches are byte indices

    def evaluate(self, x_mean: np.ndarray) -> tuple[float, float]:
        with torch.no_grad():  # in the run's dtype: float64 would triple the LSTM's evaluation time
            logits = self.logits(torch.as_tensor(x_mean), self.eval_inputs)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), self.eval_targets.reshape(-1)).item()
            return loss, (logits.argmax(-1) == self.eval_targets).double().mean().item()

    def validation_loss(self, x_mean: np.ndarray) -> float:
        """Next-byte cross-entropy (nats) over the validation windows (NaN without a validation split)."""
        if not len(self.validation_inputs):
            return math.nan
        with torch.no_grad():
            logits = self.logits(torch.as_tensor(x_mean), self.validation_inputs)
            return F.cross_entropy(logits.reshape(-1, VOCAB), self.validation_targets.reshape(-1)).item()


def _windows(data: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-byte targets of the non-overlapping seq_len windows of `data` (each (windows, seq_len))."""
    windows = max((len(data) - 1) // seq_len, 0)
    inputs = torch.as_tensor(data[: windows * seq_len].reshape(windows, seq_len), dtype=torch.long)
    targets = torch.as_tensor(data[1: windows * seq_len + 1].reshape(windows, seq_len), dtype=torch.long)
    return inputs, targets


class TextOracle:
    """Loss and gradient of the next batch, for all workers (rank None: leading worker axis) or one rank."""

    def __init__(self, workload: TextWorkload, rank: int | None, device: Any) -> None:
        self.w, self.rank, self.device = workload, rank, device
        self._shards = torch.as_tensor(workload.shards, dtype=torch.long, device=device)
        self._rng = np.random.default_rng([workload.seed, 1])
        self._window = torch.arange(workload.config.seq_len + 1, device=device)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, (W, B, T) or (B, T): every rank draws all workers' offsets and keeps its own."""
        c = self.w.config
        starts = self._rng.integers(0, self.w.shards.shape[1] - c.seq_len, size=(self.w.world_size, c.batch_size))
        pos = torch.as_tensor(starts, device=self.device)[..., None] + self._window
        windows = torch.gather(self._shards[:, None, :].expand(-1, c.batch_size, -1), 2, pos)
        if self.rank is not None:
            windows = windows[self.rank]
        return windows[..., :-1], windows[..., 1:]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.next_batch()
        if self.rank is not None:
            return self._loss_and_grad(x, inputs, targets)
        if self.w.config.worker_grads == "vmap":
            grad, loss = torch.func.vmap(torch.func.grad_and_value(self.w.loss))(x, inputs, targets)
            return loss.detach(), grad.detach()
        losses, grads = zip(*(self._loss_and_grad(x[w], inputs[w], targets[w]) for w in range(x.shape[0])))
        return torch.stack(losses), torch.stack(grads)

    def per_example(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like a call, with per-window gradients: loss (W,) or (), gradients (W, B, d) or (B, d)."""
        inputs, targets = self.next_batch()
        if self.rank is not None:
            x, inputs, targets = x[None], inputs[None], targets[None]
        grads = torch.stack([self.w.per_example_grads(*args) for args in zip(x, inputs, targets)])
        with torch.no_grad():
            losses = torch.stack([self.w.loss(*args) for args in zip(x, inputs, targets)])
        return (losses, grads) if self.rank is None else (losses[0], grads[0])

    def _loss_and_grad(self, x: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor):
        flat = x.detach().requires_grad_(True)
        loss = self.w.loss(flat, inputs, targets)
        (grad,) = torch.autograd.grad(loss, flat)
        return loss.detach(), grad
