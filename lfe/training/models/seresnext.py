"""SE-ResNeXt-29 (Xie et al., 2017 CIFAR ResNeXt-29 with Hu et al., 2018 squeeze-excitation).

The paper names the 4×64d variant (cardinality 4, bottleneck width 64 per group):

    Conv 64 (3×3) → BN → ReLU → 3 stages × 3 bottleneck blocks (planes 64, 128, 256; outputs
    4·planes = 256, 512, 1024; strides 1, 2, 2) → global average pool → Dense(num_classes)
    block(p, s): w = cardinality · floor(p · base_width / 64)
        Conv w (1×1) → BN → ReLU → grouped Conv w (3×3, stride s, `cardinality` groups) → BN
        → ReLU → Conv 4p (1×1) → BN → SE(4p / 16) → + shortcut → ReLU
        shortcut: identity, or Conv 4p (1×1, stride s) → BN when the shape changes
    SE(r): global average pool → Dense r → ReLU → Dense 4p → sigmoid → channel-wise scale

Convolutions have no bias and He-normal kernels; BN momentum 0.9 / epsilon 1e-5 (the paper's
reference, BIGBALLON/cifar-10-cnn). Trainable parameters at 10 classes: 18,084,250 (Hu et al.'s
SE FCs with biases). The paper's "20 million" matches the reference code's layout, in which a
bug (a global `inplanes` never updated) gives *every* block a projection shortcut: with
`project_every_block=True` the count is 20,843,930 (20,838,218 without SE biases, as there). Images
[B, H, W, 3], normalised by the pipeline (paper: 32×32) → logits [B, num_classes].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lfe.training.models import common

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

_he_normal = nn.initializers.he_normal()


class SEBottleneck(nn.Module):
    """ResNeXt bottleneck with squeeze-excitation: [B, H, W, C] → [B, H/s, W/s, 4·planes]."""

    planes: int
    strides: int = 1
    cardinality: int = 4
    base_width: int = 64
    se_reduction: int = 16
    project: bool = False  # force a projection shortcut even when shapes match
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        conv, bn = common.conv_bn_layers(
            train, dt, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, kernel_init=_he_normal
        )
        s = (self.strides, self.strides)
        width = self.cardinality * (self.planes * self.base_width // 64)
        out = 4 * self.planes
        y = nn.relu(bn(name="bn1")(conv(width, (1, 1), name="conv1")(x)))
        y = conv(width, (3, 3), strides=s, feature_group_count=self.cardinality, name="conv2")(y)
        y = nn.relu(bn(name="bn2")(y))
        y = bn(name="bn3")(conv(out, (1, 1), name="conv3")(y))
        se = common.global_average_pool(y)
        se = nn.relu(nn.Dense(out // self.se_reduction, name="se_reduce", **dt)(se))
        y = y * nn.sigmoid(nn.Dense(out, name="se_expand", **dt)(se))[:, None, None, :]
        if self.project or self.strides != 1 or x.shape[-1] != out:
            x = bn(name="proj_bn")(conv(out, (1, 1), strides=s, name="proj")(x))
        return nn.relu(y + x)


class SEResNeXt(nn.Module):
    num_classes: int
    cardinality: int = 4
    base_width: int = 64
    blocks_per_stage: int = 3  # depth = 9 · blocks + 2 = 29
    se_reduction: int = 16
    project_every_block: bool = False  # the reference code's layout (see module docstring)
    stem_features: int = 64
    dtype: Any = jnp.float32  # compute dtype
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = nn.Conv(
            self.stem_features, (3, 3), use_bias=False, kernel_init=_he_normal, name="stem", **dt
        )(x)
        x = common.batch_norm(
            train=train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="stem_bn", **dt
        )(x)
        x = nn.relu(x)
        for i, (planes, strides) in enumerate(((64, 1), (128, 2), (256, 2))):
            for b in range(self.blocks_per_stage):
                x = SEBottleneck(
                    planes,
                    strides=strides if b == 0 else 1,
                    cardinality=self.cardinality,
                    base_width=self.base_width,
                    se_reduction=self.se_reduction,
                    project=self.project_every_block,
                    name=f"stage{i + 1}_block{b + 1}",
                    **dt,
                )(x, train=train)
        x = common.global_average_pool(x)
        return nn.Dense(self.num_classes, kernel_init=_he_normal, name="head", **dt)(x)
