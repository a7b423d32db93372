"""Model registry: every model name in a config resolves here.

    model = get_model("convnet", num_classes=10)            # a flax.linen.Module
    logits = model.apply(variables, images, train=False)   # logits, never probabilities

Contract for every registered model: a `flax.linen.Module` constructed with a `num_classes`
keyword (plus its own fields such as `dropout_rate` and `dtype`), called as
`__call__(x, *, train: bool)` on float images `[B, H, W, C]`, returning logits `[B, num_classes]`.
BatchNorm statistics live in the `batch_stats` collection; dropout draws from the `dropout` rng.

Adding a model is one line in `_BUILTIN` below (a lazy "module:attribute" target, so importing
this package does not import every architecture), or a `register(name, ctor)` call from
anywhere (notebooks, experiments). Tests register throwaway models for a block only:
`with temporary_model(name, ctor): ...` restores the registry on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import flax.linen as nn

from lfe.core import registry

ModelCtor = Callable[..., nn.Module]

# name -> constructor, or "package.module:Attribute" resolved on first use.
_BUILTIN: dict[str, str] = {
    "convnet": "lfe.training.models.convnet:ConvNet",
    "resnet9v2": "lfe.training.models.resnet9v2:ResNet9V2",
    "efficientnetv2_s": "lfe.training.models.efficientnetv2:EfficientNetV2",
    "wideresnet28_10": "lfe.training.models.wideresnet:WideResNet",
    "seresnext29": "lfe.training.models.seresnext:SEResNeXt",
    "davidnet": "lfe.training.models.davidnet:DavidNet",
}

_REGISTRY: dict[str, ModelCtor | str] = dict(_BUILTIN)


def register(name: str, ctor: ModelCtor | str, *, overwrite: bool = False) -> None:
    """Registers `ctor` (a Module class, a factory, or a lazy "module:attr" string) as `name`."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ctor


@contextlib.contextmanager
def temporary_model(name: str, ctor: ModelCtor | str) -> Iterator[None]:
    """Registers `ctor` as `name` (replacing any model of that name) for the `with` block, then
    puts back what `name` was before, or nothing. A test seam, in the style of big_vision's
    `temporary_ops`."""
    missing = object()
    before = _REGISTRY.get(name, missing)
    _REGISTRY[name] = ctor
    try:
        yield
    finally:
        if before is missing:
            _REGISTRY.pop(name, None)
        else:
            _REGISTRY[name] = before


def available() -> tuple[str, ...]:
    """Sorted names of all registered models."""
    return tuple(sorted(_REGISTRY))


def get_model(name: str, *, num_classes: int, **kwargs) -> nn.Module:
    """Builds the registered model `name` with `num_classes` outputs and extra module fields."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    return registry.resolve(_REGISTRY[name], "model")(num_classes=num_classes, **kwargs)
