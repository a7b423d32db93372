"""The paper's three-layer ConvNet (§3.5.1; the gate of §3.7 and the initial population).

    Conv 12 (3×3, same) → BN → swish → Conv 24 (3×3, stride 2, same) → BN → swish
    → Conv 48 (3×3, stride 2, same) → global average pool → dropout 0.1 → Dense(num_classes)

As in the authors' Keras `ConvNet` (fitness_functions.py): convolutions carry biases, there is no
BN/activation after the last convolution, and the head's softmax is applied by the loss side, so
this module returns logits. Trainable parameters: 13,930 at 10 classes (≈14k in the paper),
in general 13,440 + 49 * num_classes. Inputs are expected in [0, 1].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lfe.training.models import common


class ConvNet(nn.Module):
    num_classes: int
    dropout_rate: float = 0.1
    features: tuple[int, int, int] = (12, 24, 48)
    conv_impl: str = "auto"  # "xla" | "taps" | "auto" (common.choose_conv_impl, once a process)
    dtype: Any = jnp.float32  # compute dtype
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        f1, f2, f3 = self.features
        x = common.conv(f1, 3, 1, impl=self.conv_impl, train=train, name="conv1", **dt)(x)
        x = nn.swish(common.batch_norm(train=train, name="bn1", **dt)(x))
        x = common.conv(f2, 3, 2, impl=self.conv_impl, train=train, name="conv2", **dt)(x)
        x = nn.swish(common.batch_norm(train=train, name="bn2", **dt)(x))
        x = common.conv(f3, 3, 2, impl=self.conv_impl, train=train, name="conv3", **dt)(x)
        x = common.global_average_pool(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return common.dense(self.num_classes, name="head", **dt)(x)
