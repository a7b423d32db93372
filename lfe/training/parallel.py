"""Data parallelism over the local devices: one jitted step, the batch split along a 1-D mesh.

    mesh = local_mesh()                      # None on a single device
    state = replicate(state, mesh)
    step = jit_data_parallel(fn, mesh, batch_argnums=(2,), donate_argnums=(0, 1))

Why `jit` with `NamedSharding` rather than `pmap`: the step function stays the single-device
one (no `pmean`/axis names inside), XLA's SPMD partitioner inserts the all-reduces, and
reductions over the batch — the loss mean, the gradients and BatchNorm's batch statistics —
are over the *global* batch, so a data-parallel step equals the single-device step on the same
batch up to float summation order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


def local_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A 1-D mesh over `devices` (default: all local devices); None for a single device."""
    devices = list(jax.local_devices() if devices is None else devices)
    if len(devices) <= 1:
        return None
    return Mesh(np.array(devices), (AXIS,))


def device_count(mesh: Mesh | None) -> int:
    return 1 if mesh is None else mesh.size


def check_batch_size(batch_size: int, mesh: Mesh | None, what: str = "batch_size") -> None:
    """Raises ValueError unless `batch_size` splits evenly over the mesh's devices."""
    n = device_count(mesh)
    if batch_size % n:
        raise ValueError(f"{what} {batch_size} must be divisible by the {n} local devices "
                         "used for data parallelism")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the devices, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """`tree` on every device of `mesh` (on the default device when `mesh` is None)."""
    return jax.device_put(tree) if mesh is None else jax.device_put(tree, replicated(mesh))


def shard_batch(batch: Any, mesh: Mesh | None) -> Any:
    """`batch` (arrays with a leading batch axis) split over `mesh`."""
    return jax.device_put(batch) if mesh is None else jax.device_put(batch, batch_sharded(mesh))


def jit_data_parallel(
    fn: Callable, mesh: Mesh | None, *, num_args: int, batch_argnums: Sequence[int],
    donate_argnums: Sequence[int] = (),
) -> Callable:
    """`jax.jit(fn)`; with a mesh, args in `batch_argnums` are batch-sharded, the others and
    every output replicated (the state stays whole on each device)."""
    if mesh is None:
        return jax.jit(fn, donate_argnums=tuple(donate_argnums))
    in_shardings = tuple(batch_sharded(mesh) if i in batch_argnums else replicated(mesh)
                         for i in range(num_args))
    return jax.jit(fn, in_shardings=in_shardings, out_shardings=replicated(mesh),
                   donate_argnums=tuple(donate_argnums))


__all__ = [
    "AXIS", "batch_sharded", "check_batch_size", "device_count", "jit_data_parallel",
    "local_mesh", "replicate", "replicated", "shard_batch",
]
