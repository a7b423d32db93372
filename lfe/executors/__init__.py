"""Executors: where candidate evaluations and grid cells run (``lfe.executors.base`` has the
protocol). Importing this package never imports JAX (tested)."""

from lfe.executors.base import (  # noqa: F401 (API)
    NAMES,
    InProcessExecutor,
    Outcome,
    ProcessPoolExecutor,
    call,
    call_target,
    check_name,
    make,
    ray_config,
    single_thread_flags,
)
