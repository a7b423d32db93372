"""EfficientNetV2-S (Tan & Le, 2021), the paper's surrogate and main evaluation network.

    stem: Conv 24 (3×3, stride 2) → BN → swish
    stages (table `EFFNETV2_S`, as in keras.applications / google automl `efficientnetv2-s`):
        block    repeats  kernel  stride  expand  channels  SE
        fused       2       3       1       1        24      -
        fused       4       3       2       4        48      -
        fused       4       3       2       4        64      -
        mbconv      6       3       2       4       128     0.25
        mbconv      9       3       1       6       160     0.25
        mbconv     15       3       2       6       256     0.25
    head: Conv 1280 (1×1) → BN → swish → global average pool → dropout → Dense(num_classes)

Blocks (the first of a stage carries its stride and channel change; the rest are stride 1):
  fused, expand 1:  Conv out (k×k, stride) → BN → swish
  fused, expand e:  Conv in·e (k×k, stride) → BN → swish → Conv out (1×1) → BN
  mbconv:           Conv in·e (1×1) → BN → swish → depthwise k×k (stride) → BN → swish
                    → SE(in·0.25, swish / sigmoid, with biases) → Conv out (1×1) → BN
  a block with stride 1 and in == out adds its input after stochastic depth (per-example drop of
  the residual branch with rate `drop_path_rate · b / 40`, b = 0..39 the block's index).
  `drop_path_rate` defaults to 0 (no stochastic depth), as the paper's authors build the model
  (`EfficientNetV2S(...)` leaves keras_efficientnet_v2's `drop_connect_rate=0`); 0.2 is the
  google/automl EfficientNetV2-S value (lfe's default before issue #21), set through a
  protocol's `model_kwargs.drop_path_rate`.

As in Keras: convolutions have no bias, BN momentum 0.9 / epsilon 1e-3, convolution kernels
VarianceScaling(2, fan_out, truncated normal) (depthwise: fan_out = k·k), head
VarianceScaling(1/3, fan_out, uniform). Module names follow the Keras layer names (`stem_conv`,
`block4b/se_reduce`, `top_bn`, `predictions`, ...) so that `lfe.training.models.pretrained` maps
published weights one to one. Inputs are normalised by the data pipeline ("effnet" mode,
(x − 127.5)/128); the model has no rescaling layer. Returns logits [B, num_classes] for images
[B, H, W, 3] of any size ≥ 32 (the network downsamples by 32).

Parameters at 10 classes: 20,190,298 trainable; 20,344,170 counting BN moving statistics as
Keras does (the paper's "20.3 million"). At 1000 classes: 21,458,488
trainable and 21,612,360 in all, the keras.applications `EfficientNetV2S` summary figures.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax.numpy as jnp

BN_MOMENTUM = 0.9  # Keras EfficientNetV2 (flax and Keras share the update rule)
BN_EPSILON = 1e-3

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")
# flax depthwise kernels are [k, k, 1, C]; Keras' are [k, k, C, 1] with fan_out = k·k.
_depthwise_init = nn.initializers.variance_scaling(
    2.0, "fan_out", "truncated_normal", in_axis=-1, out_axis=-2
)
HEAD_KERNEL_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def _conv_bn(train: bool, dt: dict) -> tuple[Any, Any]:
    """Keras-style `Conv2D(use_bias=False, padding="same")` and `BatchNormalization` factories."""
    conv = functools.partial(nn.Conv, use_bias=False, padding="SAME", kernel_init=_conv_init, **dt)
    bn = functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        **dt,
    )
    return conv, bn


class Stage(NamedTuple):
    """One row of the block table: `repeats` blocks producing `features` channels."""

    fused: bool
    repeats: int
    kernel: int
    stride: int
    expand: int
    features: int
    se_ratio: float


EFFNETV2_S: tuple[Stage, ...] = (
    Stage(fused=True, repeats=2, kernel=3, stride=1, expand=1, features=24, se_ratio=0.0),
    Stage(fused=True, repeats=4, kernel=3, stride=2, expand=4, features=48, se_ratio=0.0),
    Stage(fused=True, repeats=4, kernel=3, stride=2, expand=4, features=64, se_ratio=0.0),
    Stage(fused=False, repeats=6, kernel=3, stride=2, expand=4, features=128, se_ratio=0.25),
    Stage(fused=False, repeats=9, kernel=3, stride=1, expand=6, features=160, se_ratio=0.25),
    Stage(fused=False, repeats=15, kernel=3, stride=2, expand=6, features=256, se_ratio=0.25),
)


def block_names(stages: tuple[Stage, ...] = EFFNETV2_S) -> list[str]:
    """Keras block names in order: "block1a", "block1b", "block2a", ... (stage number, letter)."""
    return [
        f"block{i + 1}{chr(ord('a') + j)}" for i, s in enumerate(stages) for j in range(s.repeats)
    ]


def drop_path_rates(stages: tuple[Stage, ...], drop_path_rate: float) -> list[float]:
    """Stochastic depth rate of each block: `drop_path_rate · b / n` for block b of n."""
    total = sum(stage.repeats for stage in stages)
    return [drop_path_rate * b / total for b in range(total)]


class MBConv(nn.Module):
    """One MBConv or FusedMBConv block: [B, H, W, in_features] → [B, H/s, W/s, out_features]."""

    in_features: int
    out_features: int
    fused: bool
    expand: int
    kernel: int
    strides: int
    se_ratio: float
    drop_rate: float  # stochastic depth rate of this block's residual branch
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        conv, bn = _conv_bn(train, dt)
        k, s = (self.kernel, self.kernel), (self.strides, self.strides)
        hidden = self.in_features * self.expand
        y = x
        if self.expand != 1:
            # fused: the k×k strided conv does the expansion; mbconv: a 1×1 conv does
            kk, ss = (k, s) if self.fused else ((1, 1), (1, 1))
            y = conv(hidden, kk, strides=ss, name="expand_conv")(y)
            y = nn.swish(bn(name="expand_bn")(y))
        if not self.fused:
            y = conv(
                hidden, k, strides=s, feature_group_count=hidden,
                kernel_init=_depthwise_init, name="dwconv2",
            )(y)  # fmt: skip
            y = nn.swish(bn(name="bn")(y))
        if self.se_ratio > 0:
            squeezed = max(1, int(self.in_features * self.se_ratio))  # of the block input
            dense = functools.partial(nn.Dense, kernel_init=_conv_init, **dt)
            se = nn.swish(dense(squeezed, name="se_reduce")(y.mean(axis=(1, 2))))
            y = y * nn.sigmoid(dense(hidden, name="se_expand")(se))[:, None, None, :]
        if self.fused and self.expand == 1:  # the only conv of the block: k×k, strided, activated
            y = conv(self.out_features, k, strides=s, name="project_conv")(y)
            y = nn.swish(bn(name="project_bn")(y))
        else:
            y = bn(name="project_bn")(conv(self.out_features, (1, 1), name="project_conv")(y))
        if self.strides == 1 and self.in_features == self.out_features:
            # stochastic depth: drop the whole branch per example (noise shape [B, 1, 1, 1])
            y = nn.Dropout(self.drop_rate, broadcast_dims=(1, 2, 3), deterministic=not train)(y)
            y = y + x
        return y


class EfficientNetV2(nn.Module):
    """EfficientNetV2 on images [B, H, W, 3] (normalised by the pipeline) → logits [B, classes].

    `dropout_rate` is the head dropout (a progressive-training phase field; it does not change
    the parameters); `drop_path_rate` scales stochastic depth: block b of n drops its residual
    branch with rate `drop_path_rate · b / n` (default 0, the authors'; see the module docstring).
    """

    num_classes: int
    dropout_rate: float = 0.2
    drop_path_rate: float = 0.0  # the authors'; google/automl: 0.2
    stages: tuple[Stage, ...] = EFFNETV2_S
    stem_features: int = 24
    head_features: int = 1280
    dtype: Any = jnp.float32  # compute dtype
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        dt = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        conv, bn = _conv_bn(train, dt)
        x = conv(self.stem_features, (3, 3), strides=(2, 2), name="stem_conv")(x)
        x = nn.swish(bn(name="stem_bn")(x))
        names = iter(block_names(self.stages))
        rates = iter(drop_path_rates(self.stages, self.drop_path_rate))
        features = self.stem_features
        for stage in self.stages:
            for j in range(stage.repeats):
                x = MBConv(
                    in_features=features,
                    out_features=stage.features,
                    fused=stage.fused,
                    expand=stage.expand,
                    kernel=stage.kernel,
                    strides=stage.stride if j == 0 else 1,
                    se_ratio=stage.se_ratio,
                    drop_rate=next(rates),
                    name=next(names),
                    **dt,
                )(x, train=train)
                features = stage.features
        x = conv(self.head_features, (1, 1), name="top_conv")(x)
        x = nn.swish(bn(name="top_bn")(x))
        x = x.mean(axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, kernel_init=HEAD_KERNEL_INIT, name="predictions", **dt)(x)
