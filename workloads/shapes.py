"""Shape-only workloads: the real parameter tensors of the papers' models, with random gradients.

They need no weights and no data: they exist to measure what a method's code sends for a real
model's tensor layout (e.g. DGC's compression ratio on ResNet-50, claim D1). The oracle returns
seeded standard-normal gradients and a zero loss, so these runs say nothing about convergence.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


def resnet50() -> list[tuple[str, tuple[int, ...]]]:
    """ResNet-50 v1 (He et al. 2016) for ImageNet: 25,557,032 parameters."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("conv1.weight", (64, 3, 7, 7)), *_bn("bn1", 64)]
    cin = 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            shapes += [(f"{p}.conv1.weight", (width, cin, 1, 1)), *_bn(f"{p}.bn1", width),
                       (f"{p}.conv2.weight", (width, width, 3, 3)), *_bn(f"{p}.bn2", width),
                       (f"{p}.conv3.weight", (4 * width, width, 1, 1)), *_bn(f"{p}.bn3", 4 * width)]
            if b == 0:
                shapes += [(f"{p}.downsample.weight", (4 * width, cin, 1, 1)), *_bn(f"{p}.downsample.bn", 4 * width)]
            cin = 4 * width
    return shapes + [("fc.weight", (1000, 2048)), ("fc.bias", (1000,))]


def alexnet() -> list[tuple[str, tuple[int, ...]]]:
    """AlexNet as in Krizhevsky et al. 2012 and Caffe's bvlc_alexnet (grouped conv2/4/5): 60,965,224
    parameters, the 232.56 MB that DGC's Table 3 starts from."""
    layers = [("conv1", (96, 3, 11, 11)), ("conv2", (256, 48, 5, 5)), ("conv3", (384, 256, 3, 3)),
              ("conv4", (384, 192, 3, 3)), ("conv5", (256, 192, 3, 3)), ("fc6", (4096, 9216)),
              ("fc7", (4096, 4096)), ("fc8", (1000, 4096))]
    return [s for name, shape in layers for s in ((f"{name}.weight", shape), (f"{name}.bias", (shape[0],)))]


def ptb_lstm() -> list[tuple[str, tuple[int, ...]]]:
    """The 2-layer LSTM language model of DGC's PTB experiment (Zaremba et al.'s large model): 10,000
    words, 1500 hidden units, softmax weights tied to the embedding: 51,034,000 parameters, the
    194.68 MB of DGC's Table 4. Tensors as torch.nn.LSTM holds them (two biases per layer)."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("embedding.weight", (10_000, 1500))]
    for layer in range(2):
        shapes += [(f"lstm.weight_ih_l{layer}", (6000, 1500)), (f"lstm.weight_hh_l{layer}", (6000, 1500)),
                   (f"lstm.bias_ih_l{layer}", (6000,)), (f"lstm.bias_hh_l{layer}", (6000,))]
    return shapes + [("decoder.bias", (10_000,))]


def deepspeech(hidden: int = 1200, layers: int = 7) -> list[tuple[str, tuple[int, ...]]]:
    """DGC's LibriSpeech model: DeepSpeech, "a multi-layer RNN following a stack of convolution layers
    ... a 7-layer GRU of 1200 hidden units per layer" (Sec. 4.1), which states no more. Built as
    deepspeech.pytorch built DeepSpeech in 2017 (the AN4/LibriSpeech code of the time): two
    convolutions, 41x11 stride 2x2 and 21x11 stride 2x1, 32 channels, unpadded along frequency, on a
    161-bin spectrogram (16 kHz, 20 ms windows); bidirectional GRUs without biases whose directions
    are summed, batch norm before every GRU but the first and before the output layer; 29 characters
    out, no bias. With hidden=800, layers=5 this gives deepspeech.pytorch's printed 38,067,968
    parameters. The defaults give 117,461,168 parameters: 448.08 MB (MiB) of fp32 gradients, where
    DGC's Table 4 prints 488.08 MB (claims D1, D5)."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("conv.0.weight", (32, 1, 41, 11)), ("conv.0.bias", (32,)),
                                                 *_bn("conv.1", 32), ("conv.3.weight", (32, 32, 21, 11)),
                                                 ("conv.3.bias", (32,)), *_bn("conv.4", 32)]
    bins = 161
    for kernel in (41, 21):  # both convolutions stride 2 along frequency
        bins = (bins - kernel) // 2 + 1
    size = 32 * bins
    for layer in range(layers):
        if layer:
            shapes += _bn(f"rnns.{layer}.batch_norm", hidden)
        for direction in ("", "_reverse"):  # r, z, n gates stacked
            shapes += [(f"rnns.{layer}.rnn.weight_ih_l0{direction}", (3 * hidden, size)),
                       (f"rnns.{layer}.rnn.weight_hh_l0{direction}", (3 * hidden, hidden))]
        size = hidden
    return shapes + [*_bn("fc.0", hidden), ("fc.1.weight", (29, hidden))]


def _bn(name: str, channels: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{name}.weight", (channels,)), (f"{name}.bias", (channels,))]


MODELS = {"resnet50": resnet50, "alexnet": alexnet, "ptb-lstm": ptb_lstm, "deepspeech": deepspeech}


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    pass


class ShapesWorkload:
    """A model's layout with random gradients (see the module docstring)."""

    prefers = "numpy"

    def __init__(self, model: str, world_size: int, seed: int, config: ShapesConfig) -> None:
        self.kind, self.world_size, self.seed, self.config = f"{model}-shapes", world_size, seed, config
        self.layout = tuple(MODELS[model]())
        self.n_params = sum(math.prod(s) for _, s in self.layout)

    def x0(self) -> np.ndarray:
        return np.zeros(self.n_params)

    def oracle(self, xp: Any, rank: int | None, dtype: str, device: Any = None) -> RandomGradients:
        return RandomGradients(self, xp, rank, dtype, device)

    def evaluate(self, x_mean: np.ndarray) -> tuple[float, float]:
        return math.nan, math.nan


class RandomGradients:
    def __init__(self, workload: ShapesWorkload, xp: Any, rank: int | None, dtype: str, device: Any) -> None:
        self.w, self.xp, self.rank, self.dtype, self.device = workload, xp, rank, dtype, device
        self.calls = 0

    def __call__(self, x: Any) -> tuple[Any, Any]:
        workers = range(self.w.world_size) if self.rank is None else [self.rank]
        grads = np.stack([np.random.default_rng([self.w.seed, w, self.calls]).standard_normal(
            self.w.n_params, dtype=np.float32) for w in workers]).astype(self.dtype, copy=False)
        self.calls += 1
        if self.rank is not None:
            grads = grads[0]
        kw = {"device": self.device} if self.device is not None else {}
        return self.xp.zeros(grads.shape[:-1], dtype=grads.dtype, **kw), self.xp.asarray(grads, **kw)
