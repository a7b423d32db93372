"""Layers with the Keras defaults the authors' TensorFlow models used.

Keras `Conv2D`/`Dense`: glorot-uniform kernels, zero biases, `use_bias=True`.
Keras `BatchNormalization`: momentum 0.99, epsilon 1e-3 (flax: 0.99 / 1e-5, same update rule
`ra = momentum * ra + (1 - momentum) * batch`). Parameters are float32; `dtype` sets the
compute dtype for later mixed precision.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lfe.core import malloc

KERAS_BN_MOMENTUM = 0.99
KERAS_BN_EPSILON = 1e-3

Dtype = Any

keras_kernel_init = nn.initializers.glorot_uniform()


class TapsConv(nn.Module):
    """SAME-padded 2-D convolution as one matmul over the kernel's shifted (strided) taps.

    Same parameters (`kernel` HWIO, `bias`) and results as `nn.Conv`, computed differently:
    XLA:CPU's weight-gradient convolutions are slow for these few-channel layers, and a matmul
    over the concatenated taps differentiates into plain matmuls and pads. Measured on 2 CPU
    cores: ConvNet train step 21.5 → 23.5 steps/s; ResNet9V2 15.0 → 11.6 (slower), so it is
    opt-in per model (`conv_impl`). Forward-only it is slower at large batches (ConvNet eval of
    5,000 images: 0.9 s vs 0.16 s), so "auto" uses it for training only.
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    kernel_init: Callable = keras_kernel_init
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        k, s, c = self.kernel_size, self.strides, x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, c, self.features), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        height, width = x.shape[1:3]
        out_h, out_w = -(-height // s), -(-width // s)
        pad_h = max((out_h - 1) * s + k - height, 0)  # TF/flax SAME: extra pad goes after
        pad_w = max((out_w - 1) * s + k - width, 0)
        x = jnp.pad(
            x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
        )
        taps = [
            x[:, i : i + (out_h - 1) * s + 1 : s, j : j + (out_w - 1) * s + 1 : s, :]
            for i in range(k)
            for j in range(k)
        ]
        patches = jnp.concatenate(taps, axis=-1) if len(taps) > 1 else taps[0]
        return patches @ kernel.reshape(k * k * c, self.features) + bias


CONV_IMPLS = ("auto", "taps", "xla")


def choose_conv_impl(*, train: bool, backend: str, cpu_threads: int, malloc_tuned: bool) -> str:
    """What `conv_impl="auto"` means, from explicit inputs: "taps" when training on the "cpu"
    backend with XLA:CPU computing on more than one thread (`cpu_threads` != 1; 0 = unknown)
    and glibc's default malloc settings (`malloc_tuned` False), "xla" otherwise. Both have the
    same parameters; their results differ in float32 rounding only.

    Measured (BENCHMARKS.md §3), ConvNet step: 2 threads, default malloc 17.6 steps/s with taps
    vs 16.0 with XLA's conv; with `lfe.core.malloc`'s settings 17 vs 19–21; one pinned
    single-threaded core 6.0 vs 10.2 (14.1).
    """
    taps = train and backend == "cpu" and cpu_threads != 1 and not malloc_tuned
    return "taps" if taps else "xla"


def xla_cpu_threads(cores: int, xla_flags: str) -> int:
    """XLA:CPU's compute threads in a process with `cores` usable cores and `xla_flags`: 1 when
    Eigen's multi-threading is switched off (the pool executor's pinned workers,
    `lfe.executors`), else `cores`."""
    return 1 if "--xla_cpu_multi_thread_eigen=false" in xla_flags else cores


def environment_conv_inputs() -> dict[str, Any]:
    """`choose_conv_impl`'s inputs as this process has them: JAX's default backend, the usable
    cores (CPU affinity) with `XLA_FLAGS`, and `lfe.core.malloc.tuned()` (`GLIBC_TUNABLES`)."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 0
    return {"backend": jax.default_backend(),
            "cpu_threads": xla_cpu_threads(cores, os.environ.get("XLA_FLAGS", "")),
            "malloc_tuned": malloc.tuned()}


@functools.cache
def auto_conv_impl(train: bool) -> str:
    """`conv_impl="auto"` in this process: `choose_conv_impl` on `environment_conv_inputs()`,
    read when the first "auto" model is built and kept for the rest of the process (so its
    models all compute the same way). Processes set these inputs before that: `python -m
    lfe.main` restarts itself with the malloc settings first thing, and pool workers pin
    themselves when they start. (Read at every build, as before, a process that built "auto"
    models both before and after creating a process pool, which adds the malloc settings to its
    own environment for its workers, switched from taps to XLA's conv; now it keeps the first.)
    """
    return choose_conv_impl(train=train, **environment_conv_inputs())


def resolve_conv_impl(impl: str, *, train: bool = True) -> str:
    """A model's `conv_impl` field as the convolution it computes: "taps" or "xla" as given,
    "auto" as `auto_conv_impl` decides for this process."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"unknown conv_impl {impl!r}; available: {', '.join(CONV_IMPLS)}")
    return auto_conv_impl(train) if impl == "auto" else impl


def conv(
    features: int,
    kernel: int = 3,
    strides: int = 1,
    *,
    dtype: Dtype,
    param_dtype: Dtype,
    impl: str = "xla",
    train: bool = True,
    name: str | None = None,
) -> nn.Module:
    """`Conv2D(features, kernel, strides, padding="same")` with Keras initialisers.

    `impl` picks the computation (see `TapsConv`); `train` only matters for "auto".
    """
    if resolve_conv_impl(impl, train=train) == "taps":
        return TapsConv(features, kernel, strides, dtype=dtype, param_dtype=param_dtype, name=name)
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        padding="SAME",
        kernel_init=keras_kernel_init,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def dense(features: int, *, dtype: Dtype, param_dtype: Dtype, name: str | None = None) -> nn.Dense:
    return nn.Dense(
        features, kernel_init=keras_kernel_init, dtype=dtype, param_dtype=param_dtype, name=name
    )


def batch_norm(
    *,
    train: bool,
    dtype: Dtype,
    param_dtype: Dtype,
    name: str | None = None,
    momentum: float = KERAS_BN_MOMENTUM,
    epsilon: float = KERAS_BN_EPSILON,
) -> nn.BatchNorm:
    """Keras `BatchNormalization` defaults unless `momentum`/`epsilon` say otherwise (PyTorch-
    style nets use 0.9 / 1e-5)."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def global_average_pool(x):
    """`GlobalAvgPool2D` over H and W of NHWC."""
    return x.mean(axis=(1, 2))


def conv_bn_layers(train: bool, dt: dict, *, momentum: float, epsilon: float, kernel_init):
    """(conv, bn) constructors sharing one setting: bias-free SAME convolutions with
    `kernel_init`, BatchNorm with `momentum`/`epsilon` (the CIFAR ResNets' blocks)."""
    bn = functools.partial(batch_norm, train=train, momentum=momentum, epsilon=epsilon, **dt)
    conv = functools.partial(nn.Conv, use_bias=False, padding="SAME", kernel_init=kernel_init,
                             **dt)
    return conv, bn
