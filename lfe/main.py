"""Entry point: ``python -m lfe.main --config=configs/<x>.py --workdir=DIR``.

Overrides: ``--config.a.b=value`` (an unknown key fails). ``config.mode`` picks what runs; each
mode is a module function ``run(config, workdir)``. Errors in the input (unknown names, bad
files, bad values) end with one ``lfe: error: ...`` line and exit status 2. SIGINT (Ctrl-C) or
SIGTERM stops a run: its executor is closed and ``stopped; rerun the same command to resume`` is
the one line printed (exit status 128 + the signal's number); a second signal ends it at once
(``lfe.core.stop``). A config with a ``command`` key records the command line that ran it there
(``invocation``: overrides included), so tables can say how to reproduce them. JAX's INFO line
``Unable to initialize backend 'tpu'`` on a host without TPU software is not printed
(``quiet_tpu_probe``).
"""

from __future__ import annotations

import importlib
import logging
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from lfe.core import stop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created if missing).")

# The modes: each name is a module of ``lfe.experiments`` with ``run(config, workdir)``.
MODES = ("augment_grid", "compare", "eliminate", "evolve", "phenotypes", "pipeline", "report",
         "transfer")


def dispatch(config, workdir: str):
    """Runs ``config.mode``; importable for tests and notebooks."""
    mode = config.get("mode")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; available: {', '.join(sorted(MODES))}")
    return importlib.import_module(f"lfe.experiments.{mode}").run(config, workdir)


def _fail(message: str) -> None:
    print(f"lfe: error: {message}", file=sys.stderr)
    sys.exit(2)


_ARGV: list[str] = []  # the command line as parse_flags got it


def invocation(argv: list[str]) -> str:
    """The command line ``argv`` as one shell line that reruns it: ``python -m lfe.main`` and
    its flags as given, quoted where the shell needs it."""
    return " ".join(["python -m lfe.main"] + [shlex.quote(a) for a in argv[1:]])


class _NoTpuProbe(logging.Filter):
    """Drops JAX's INFO record of probing for a TPU where no TPU software is installed (libtpu
    cannot be opened): absl prints INFO records, and every CPU run would show it. A TPU that
    fails to start on a host with libtpu, and every warning or error, still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (record.levelno <= logging.INFO
                    and message.startswith("Unable to initialize backend 'tpu'")
                    and "libtpu.so" in message)


def quiet_tpu_probe() -> None:
    """Installs ``_NoTpuProbe`` on JAX's backend logger (once)."""
    logger = logging.getLogger("jax._src.xla_bridge")
    if not any(isinstance(f, _NoTpuProbe) for f in logger.filters):
        logger.addFilter(_NoTpuProbe())


def parse_flags(argv):
    """absl's flag parsing, with config-file and override errors reduced to one line."""
    _ARGV[:] = argv
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - config_flags raises many types; all are input errors
        detail = _last_line(e)
        if any(a.startswith("--config.") for a in argv[1:]) and isinstance(
                e, (AttributeError, KeyError)):
            _fail(f"unknown config key in a --config.* override: {detail}")
        _fail(f"bad flags: {detail}")


def _last_line(e: BaseException) -> str:
    """One line from an exception, unwrapping ml_collections' nested KeyError messages."""
    message = e
    while isinstance(message, BaseException) and message.args:
        message = message.args[0]
    lines = [_unquote(line.strip()) for line in str(message).strip().splitlines()
             if line.strip()]
    if "Traceback (most recent call last):" in lines:  # a config file's get_config raised
        lines = lines[-1:]
    return "; ".join(lines) if lines else type(e).__name__


def _unquote(text: str) -> str:
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    config = _CONFIG.value
    if config is None or _WORKDIR.value is None:
        _fail("both --config=configs/<x>.py and --workdir=DIR are required")
    if "command" in config and _ARGV:
        config.command = invocation(_ARGV)  # what made this run, for its Reproduce line
    quiet_tpu_probe()
    stop.install()  # SIGINT/SIGTERM: close the executor, one line, rerun resumes
    try:
        dispatch(config, _WORKDIR.value)
    except KeyboardInterrupt:  # stop.Stopped, or Ray's KeyboardInterrupt in its place
        _stopped()
    except (ValueError, KeyError, OSError) as e:  # OSError: config_flags defers a config
        if stop.received():  # file's load error to first access
            _stopped()
        _fail(_last_line(e))
    except Exception:
        if stop.received():  # whatever a stop interrupted fails as it may: the run stopped
            _stopped()
        raise


def _stopped() -> None:
    print(stop.MESSAGE, file=sys.stderr)
    sys.exit(stop.exit_status(stop.received()))


if __name__ == "__main__":
    from lfe.core import malloc

    malloc.reexec()  # glibc malloc settings for XLA:CPU (lfe/malloc.py); once, before JAX loads
    app.run(main, flags_parser=parse_flags)
