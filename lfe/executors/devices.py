"""The accelerators of this host, found without importing JAX (a controller never does).

``local()`` says which devices the ``auto`` executor spreads candidates over (one long-lived
worker process per device, ``lfe.executors.pool.DevicePoolExecutor``); a host without any gets
the CPU pool. Looked at, in order:

1. ``LFE_ACCELERATORS``, when set: ``0`` (or ``none``, ``cpu``) = none, even on an accelerator
   host; ``N`` or ``gpu:N`` = N NVIDIA GPUs (0..N-1); ``tpu:N`` = N TPU chips. For tests, fakes
   and hosts whose devices the probes below miss.
2. ``JAX_PLATFORMS`` naming only ``cpu`` (the launch docs' CPU setting): none.
3. NVIDIA GPUs: the lines of ``nvidia-smi -L``, else the entries of
   ``/proc/driver/nvidia/gpus``; restricted to ``CUDA_VISIBLE_DEVICES`` when it is set (its
   entries, indices or UUIDs, up to the first empty or negative one, as CUDA reads it).
4. TPU chips: the ``/dev/accel<N>`` devices, else the ``/dev/vfio/<group>`` groups holding a
   Google (PCI vendor 0x1ae0) device; restricted to ``TPU_VISIBLE_CHIPS`` when it is set.

``worker_env(accelerators, i, workers)`` is the environment worker ``i`` starts with, before
anything imports JAX: ``CUDA_VISIBLE_DEVICES=<its GPU>`` (and
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` when workers share GPUs), or one TPU chip per process
(``TPU_VISIBLE_CHIPS`` and 1x1x1 process bounds, its own mesh controller port). Never
``JAX_PLATFORMS=cpu``, core pinning or single-threaded XLA: those are the CPU pool's.
The TPU settings follow libtpu's documented per-process variables and have not been run on a
TPU host here.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import subprocess

OVERRIDE = "LFE_ACCELERATORS"
TPU_PORT = 8476  # worker i's TPU mesh controller listens on TPU_PORT + i
GOOGLE_PCI_VENDOR = "0x1ae0"


@dataclasses.dataclass(frozen=True)
class Accelerators:
    kind: str = ""  # "gpu" | "tpu" | "" (none)
    ids: tuple[str, ...] = ()  # what each worker's visibility variable is set to

    def __bool__(self) -> bool:
        return bool(self.ids)

    def __str__(self) -> str:
        return f"{len(self.ids)} {self.kind.upper()}{'s' if len(self.ids) != 1 else ''}" \
            if self else "no accelerator"


def parse_override(value: str) -> Accelerators:
    """``LFE_ACCELERATORS``'s value: ``0``/``none``/``cpu``, ``N``, ``gpu:N`` or ``tpu:N``."""
    text = value.strip().lower()
    if text in ("", "0", "none", "cpu"):
        return Accelerators()
    kind, _, count = text.rpartition(":")
    kind = kind or "gpu"
    if kind not in ("gpu", "tpu") or not count.isdigit():
        raise ValueError(f"{OVERRIDE}={value!r}: expected 0, N, gpu:N or tpu:N")
    n = int(count)
    return Accelerators(kind if n else "", tuple(str(i) for i in range(n)))


def visible(ids: list[str], restriction: str | None) -> tuple[str, ...]:
    """``ids`` seen through a ``*_VISIBLE_*`` variable (None: unset): its entries in order, up
    to the first empty or negative one; the variable's entries name devices themselves."""
    if restriction is None:
        return tuple(ids)
    out = []
    for entry in restriction.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        out.append(entry)
    return tuple(out[: len(ids)])


def nvidia_gpus() -> list[str]:
    """Indices of the NVIDIA GPUs the driver shows this process (no CUDA, no JAX)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=20)
            lines = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
            if out.returncode == 0 and lines:
                return [str(i) for i in range(len(lines))]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def _google_group(group: str) -> bool:
    for vendor in glob.glob(f"/sys/kernel/iommu_groups/{group}/devices/*/vendor"):
        try:
            with open(vendor) as f:
                if f.read().strip().lower() == GOOGLE_PCI_VENDOR:
                    return True
        except OSError:
            pass
    return False


def tpu_chips() -> list[str]:
    """Indices of this host's TPU chips (``/dev/accel<N>``, else Google VFIO groups)."""
    accel = [p for p in glob.glob("/dev/accel*")
             if not os.path.isdir(p) and p[len("/dev/accel"):].isdigit()]
    if accel:
        return [str(i) for i in range(len(accel))]
    try:
        groups = [g for g in os.listdir("/dev/vfio") if g.isdigit()]
    except OSError:
        return []
    return [str(i) for i in range(sum(_google_group(g) for g in groups))]


def local(environ=None) -> Accelerators:
    """This host's accelerators (see the module docstring for the order of the probes)."""
    env = os.environ if environ is None else environ
    if env.get(OVERRIDE) is not None:
        return parse_override(env[OVERRIDE])
    platforms = {p.strip().lower() for p in env.get("JAX_PLATFORMS", "").split(",") if p.strip()}
    if platforms and platforms <= {"cpu"}:
        return Accelerators()
    gpus = visible(nvidia_gpus(), env.get("CUDA_VISIBLE_DEVICES"))
    if gpus:
        return Accelerators("gpu", gpus)
    chips = visible(tpu_chips(), env.get("TPU_VISIBLE_CHIPS"))
    return Accelerators("tpu", chips) if chips else Accelerators()


def workers_for(accelerators: Accelerators, workers: int = 0) -> int:
    """How many workers: ``workers`` (0: one per device); TPUs at most one per chip (a chip
    serves one process)."""
    n = int(workers or len(accelerators.ids))
    return min(n, len(accelerators.ids)) if accelerators.kind == "tpu" else n


def worker_env(accelerators: Accelerators, i: int, workers: int) -> dict[str, str]:
    """The environment worker ``i`` of ``workers`` starts with: its device, round-robin."""
    device = accelerators.ids[i % len(accelerators.ids)]
    if accelerators.kind == "tpu":
        port = str(TPU_PORT + i)
        bounds = "1,1,1"
        return {"TPU_VISIBLE_CHIPS": device, "TPU_VISIBLE_DEVICES": device,
                "TPU_CHIPS_PER_PROCESS_BOUNDS": bounds, "TPU_PROCESS_BOUNDS": bounds,
                "TPU_CHIPS_PER_HOST_BOUNDS": bounds, "TPU_HOST_BOUNDS": bounds,
                "TPU_MESH_CONTROLLER_ADDRESS": f"localhost:{port}",
                "TPU_MESH_CONTROLLER_PORT": port}
    env = {"CUDA_VISIBLE_DEVICES": device}
    if workers > len(accelerators.ids):  # GPUs shared: allocate on demand, not 75% each
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env
