"""ResNet9V2, the paper's second small surrogate (§3.5.1; ≈30k parameters).

    Conv 8 (3×3) → PreActBlock(16) → PreActBlock(32) → GAP → dropout 0.5 → Dense(num_classes)
    PreActBlock(f): [BN, swish, Conv f 3×3 stride 2; BN, swish, Conv f 3×3; BN, swish, Conv f 3×3]
                    + Conv f 1×1 stride 2 projection of the block input

Follows the authors' Keras `build_resnet9_v2` (fitness_functions.py): the projection shortcut
takes the raw block input (not the pre-activated one), and there is **no** final BN + swish
before pooling, unlike He et al.'s pre-activation nets. `final_preact=True` adds that final
BN + swish (+64 parameters). Trainable parameters at 10 classes: 30,426 (authors' layout) or
30,490 with `final_preact`; in general 30,096 + 33 * num_classes (+64). Returns logits; inputs
are expected in [0, 1].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lfe.training.models import common


class PreActBlock(nn.Module):
    features: int
    strides: int = 2
    conv_impl: str = "xla"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        cv = {"impl": self.conv_impl, "train": train, **dt}
        shortcut = common.conv(self.features, 1, self.strides, name="proj", **cv)(x)
        y = x
        for i, strides in enumerate((self.strides, 1, 1)):
            y = nn.swish(common.batch_norm(train=train, name=f"bn{i + 1}", **dt)(y))
            y = common.conv(self.features, 3, strides, name=f"conv{i + 1}", **cv)(y)
        return y + shortcut


class ResNet9V2(nn.Module):
    num_classes: int
    dropout_rate: float = 0.5
    stem_features: int = 8
    block_features: tuple[int, ...] = (16, 32)
    final_preact: bool = False
    conv_impl: str = "xla"  # "taps" measured slower for this model on CPU (see common.TapsConv)
    dtype: Any = jnp.float32  # compute dtype
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = common.conv(
            self.stem_features, 3, 1, impl=self.conv_impl, train=train, name="stem", **dt
        )(x)
        for i, features in enumerate(self.block_features):
            x = PreActBlock(features, conv_impl=self.conv_impl, name=f"block{i + 1}", **dt)(
                x, train=train
            )
        if self.final_preact:
            x = nn.swish(common.batch_norm(train=train, name="final_bn", **dt)(x))
        x = common.global_average_pool(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return common.dense(self.num_classes, name="head", **dt)(x)
