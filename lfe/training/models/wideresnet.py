"""WideResNet-d-k (Zagoruyko & Komodakis, 2016), pre-activation; the paper uses WRN-28-10.

    Conv 16 (3×3) → 3 groups of n = (d − 4) / 6 blocks of widths 16k, 32k, 64k (strides 1, 2, 2)
    → BN → ReLU → global average pool → Dense(num_classes)
    block(w, s): o = ReLU(BN(x)); y = Conv w (3×3, stride s)(o) → BN → ReLU → [dropout]
                 → Conv w (3×3); out = y + (x, or Conv w (1×1, stride s)(o) when the shape changes)

As in the paper's reference code (BIGBALLON/cifar-10-cnn, after Zagoruyko's): convolutions have
no bias and He-normal kernels, BN momentum 0.9 / epsilon 1e-5, the projection shortcut takes the
pre-activated input, no dropout by default (App. D names none; `dropout_rate` adds Zagoruyko's
between-convolution dropout). The head keeps its bias. Trainable parameters of WRN-28-10 at 10
classes: 36,479,194 (36.5M in Zagoruyko & Komodakis, Table 3). Images [B, H, W, 3], normalised
by the pipeline, of any size (the paper's: 32×32) → logits [B, num_classes].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lfe.training.models import common

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

_he_normal = nn.initializers.he_normal()


class WideBlock(nn.Module):
    """Pre-activation basic block: [B, H, W, C] → [B, H/strides, W/strides, features]."""

    features: int
    strides: int = 1
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        conv, bn = common.conv_bn_layers(
            train, dt, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, kernel_init=_he_normal
        )
        s = (self.strides, self.strides)
        preact = nn.relu(bn(name="bn1")(x))
        y = conv(self.features, (3, 3), strides=s, name="conv1")(preact)
        y = nn.relu(bn(name="bn2")(y))
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        y = conv(self.features, (3, 3), name="conv2")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(self.features, (1, 1), strides=s, name="proj")(preact)
        return y + x


class WideResNet(nn.Module):
    num_classes: int
    depth: int = 28
    width: int = 10
    dropout_rate: float = 0.0
    stem_features: int = 16
    dtype: Any = jnp.float32  # compute dtype
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        if (self.depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {self.depth}")
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = nn.Conv(
            self.stem_features, (3, 3), use_bias=False, kernel_init=_he_normal, name="stem", **dt
        )(x)
        blocks = (self.depth - 4) // 6
        for g, (mult, strides) in enumerate(((1, 1), (2, 2), (4, 2))):
            for b in range(blocks):
                x = WideBlock(
                    self.stem_features * mult * self.width,
                    strides=strides if b == 0 else 1,
                    dropout_rate=self.dropout_rate,
                    name=f"group{g + 1}_block{b + 1}",
                    **dt,
                )(x, train=train)
        x = common.batch_norm(
            train=train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="final_bn", **dt
        )(x)
        x = common.global_average_pool(nn.relu(x))
        return nn.Dense(self.num_classes, kernel_init=_he_normal, name="head", **dt)(x)
