"""DavidNet: the ResNet-9 of Myrtle.ai's DAWNBench CIFAR-10 entry (David Page, 2018).

    prep:   Conv 64 (3×3) → BN → ReLU
    layer1: Conv 128 → BN → ReLU → max pool 2 → + res(128)
    layer2: Conv 256 → BN → ReLU → max pool 2
    layer3: Conv 512 → BN → ReLU → max pool 2 → + res(512)
    head:   global max pool → Dense(num_classes, no bias) → × 0.125
    res(c): x + (Conv c → BN → ReLU → Conv c → BN → ReLU)(x)

All convolutions 3×3, same padding, no bias. BN as in the PyTorch original (momentum 0.9 in the
flax/Keras convention, epsilon 1e-5); kernels PyTorch's default init (uniform, variance
1/(3·fan_in)). No dropout. The 0.125 output scale keeps the initial logits small, which the
original needs at its high learning rate (App. D: warm-up to 0.4). Trainable parameters at 10
classes: 6,573,120 (≈6.5M). Images [B, H, W, 3], normalised by the pipeline (32×32 in the
paper; the final pool is global, so any size divisible by 8 works) → logits [B, num_classes].
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lfe.training.models import common

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

_torch_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class ConvBN(nn.Module):
    """Conv (3×3, no bias) → BN → ReLU: [B, H, W, C] → [B, H, W, features]."""

    features: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = nn.Conv(self.features, (3, 3), use_bias=False, kernel_init=_torch_init, **dt)(x)
        x = common.batch_norm(train=train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, **dt)(x)
        return nn.relu(x)


class DavidNet(nn.Module):
    num_classes: int
    features: tuple[int, int, int, int] = (64, 128, 256, 512)
    output_scale: float = 0.125
    dtype: Any = jnp.float32  # compute dtype
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        layer = functools.partial(ConvBN, dtype=self.dtype, param_dtype=self.param_dtype)
        pool = functools.partial(nn.max_pool, window_shape=(2, 2), strides=(2, 2))
        prep, f1, f2, f3 = self.features
        x = layer(prep, name="prep")(x, train=train)
        for name, features, residual in (("layer1", f1, True), ("layer2", f2, False),
                                         ("layer3", f3, True)):  # fmt: skip
            x = pool(layer(features, name=name)(x, train=train))
            if residual:
                y = layer(features, name=f"{name}_res1")(x, train=train)
                x = x + layer(features, name=f"{name}_res2")(y, train=train)
        x = x.max(axis=(1, 2))
        x = nn.Dense(
            self.num_classes, use_bias=False, kernel_init=_torch_init, name="linear",
            dtype=self.dtype, param_dtype=self.param_dtype,
        )(x)  # fmt: skip
        return x * self.output_scale
