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

Installed (``pip install .``), the ``lfe`` command is this module (``cli``). ``--help`` lists the
modes, the configs with their variants (``lfe.catalog``) and how to see and set config keys;
``--print_config`` prints the resolved config as JSON and exits. A ``--config`` path missing
from the current directory is read from the installed configs (``catalog.resolve``). Every
config value is checked (``lfe.experiments.validation``) before a mode starts. An OS error is
one line naming the path and the cause; a run whose two state checkpoints are damaged names the
command that rebuilds it from its event log (``lfe.core.recover``).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from lfe.core import stop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created if missing).")
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False,
                                  "Print the resolved config (every key, as JSON) and exit.")
HELP_FLAGS = ("--help", "-help", "-h", "--h", "--helpshort", "-?")

# The modes: each name is a module of ``lfe.experiments`` with ``run(config, workdir)``.
MODES = ("augment_grid", "compare", "eliminate", "evolve", "phenotypes", "pipeline", "report",
         "transfer")


def dispatch(config, workdir: str):
    """Runs ``config.mode`` after checking every config value; importable for tests and
    notebooks."""
    mode = config.get("mode")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; available: {', '.join(sorted(MODES))}")
    from lfe.experiments import validation

    validation.check(config)
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
    """absl's flag parsing, with config-file and override errors reduced to one line; ``--help``
    prints ``catalog.help_text`` (exit 0); a ``--config`` path is resolved by
    ``catalog.resolve``."""
    _ARGV[:] = argv
    try:
        if any(a in HELP_FLAGS for a in argv[1:]):
            from lfe import catalog

            print(catalog.help_text(MODES))
            sys.exit(0)
        return flags.FLAGS(_with_config_found(argv))
    except KeyboardInterrupt:
        _stopped()
    except Exception as e:  # noqa: BLE001 - config_flags raises many types; all are input errors
        _fail(_flag_error(e, argv))


def _with_config_found(argv: list[str]) -> list[str]:
    """``argv`` with the ``--config`` path made one that exists (``catalog.resolve``)."""
    from lfe import catalog

    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith(("--config=", "-config=")):
            flag, _, spec = arg.partition("=")
            out[i] = f"{flag}={catalog.resolve(spec)}"
        elif arg in ("--config", "-config") and i + 1 < len(out):
            out[i + 1] = catalog.resolve(out[i + 1])
    return out


_OVERRIDE = re.compile(r"flag --config\.([\w.]+)=(.*?): ")
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _flag_error(e: BaseException, argv: list[str]) -> str:
    """One line for an exception of absl's flag parsing (config files and overrides)."""
    detail = _last_line(e)
    if any(a.startswith("--config.") for a in argv[1:]) and isinstance(
            e, (AttributeError, KeyError)):
        return f"unknown config key in a --config.* override: {detail}"
    found = _OVERRIDE.search(str(e))
    if found:  # a value of the wrong type for its key: name the key and the type expected
        path, value = found.groups()
        current = _current(path)
        kind = _KINDS.get(type(current), f"a {type(current).__name__}")
        return f"config.{path}: expected {kind} (it is {current!r} now), got {value!r}"
    detail = re.sub(r"^flag --config=\S*: ", "", detail)
    return re.sub(r"^(ValueError|TypeError): ", "", detail)


def _current(path: str):
    """The config's value at dotted ``path`` before overrides, or None."""
    value = _CONFIG.value
    try:
        for key in path.split("."):
            value = value[key]
    except Exception:  # noqa: BLE001 - only for a message
        return None
    return value


def _last_line(e: BaseException) -> str:
    """One line from an exception, unwrapping ml_collections' nested KeyError messages; an
    OSError is its path and its cause (``os_error``)."""
    message = e
    while isinstance(message, BaseException) and message.args:
        if isinstance(message, OSError) and message.strerror:
            return os_error(message)
        message = message.args[0]
    lines = [_unquote(line.strip()) for line in str(message).strip().splitlines()
             if line.strip()]
    if "Traceback (most recent call last):" in lines:  # a config file's get_config raised
        lines = lines[-1:]
    return "; ".join(lines) if lines else type(e).__name__


def os_error(e: OSError) -> str:
    """``<path>: <cause>`` (``<path> -> <path2>: <cause>`` for a rename), e.g.
    ``runs/x: File exists``; the bare cause when the error names no path."""
    where = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    return f"{where}: {e.strerror}" if where else str(e.strerror)


def _unquote(text: str) -> str:
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    config = _CONFIG.value
    if config is None:
        _fail("--config=configs/<x>.py is required (lfe --help lists the configs)")
    if _PRINT_CONFIG.value:
        print_config(config)
        return
    if _WORKDIR.value is None:
        _fail("--workdir=DIR is required (the run directory; rerunning resumes it)")
    check_workdir(_WORKDIR.value)
    if "command" in config and _ARGV:
        config.command = invocation(_ARGV)  # what made this run, for its Reproduce line
    quiet_tpu_probe()
    try:
        stop.install()  # SIGINT/SIGTERM: close the executor, one line, rerun resumes
    except ValueError as e:  # a bad $LFE_STOP_GRACE_S
        _fail(str(e))
    try:
        dispatch(config, _WORKDIR.value)
    except KeyboardInterrupt:  # stop.Stopped, or Ray's KeyboardInterrupt in its place
        _stopped()
    except (ValueError, KeyError, OSError) as e:  # OSError: config_flags defers a config
        if stop.received():  # file's load error to first access
            _stopped()
        _fail(_last_line(e) + _recover_hint(e, _WORKDIR.value))
    except Exception:
        if stop.received():  # whatever a stop interrupted fails as it may: the run stopped
            _stopped()
        raise


def print_config(config) -> None:
    """The resolved ``config`` (file, variants and overrides) as JSON, after checking it: the
    keys ``--config.<key>=<value>`` can set."""
    from lfe.core import rundir
    from lfe.experiments import validation

    try:
        validation.check(config)
    except (ValueError, OSError) as e:
        _fail(_last_line(e))
    print(json.dumps(rundir.to_plain(config), indent=2, ensure_ascii=False))


def check_workdir(workdir: str) -> None:
    """Refuses a ``--workdir`` that exists and is not a directory (one line)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        _fail(f"--workdir {workdir} is a file, not a directory; name a directory (created if "
              "missing)")


def _recover_hint(e: BaseException, workdir: str) -> str:
    """For a run whose two checkpoints are damaged: the command that rebuilds its state."""
    from lfe.core import rundir

    if not isinstance(e, rundir.CorruptRunError):
        return ""
    return (f"; or rebuild its state from the finished evaluations in {rundir.EVENTS}: "
            f"python -m lfe.core.recover {shlex.quote(workdir)}, then rerun this command")


def _stopped() -> None:
    if _WORKDIR.value:  # where the finished work is kept, and what the rerun resumes
        print(f"run directory: {_WORKDIR.value} (every finished evaluation or cell is saved "
              "there)", file=sys.stderr)
    print(stop.MESSAGE, file=sys.stderr)
    sys.exit(stop.exit_status(stop.received()))


def cli() -> None:
    """The ``lfe`` command (``pip install .``): ``python -m lfe.main``."""
    from lfe.core import malloc

    malloc.reexec()  # glibc malloc settings for XLA:CPU (lfe/malloc.py); once, before JAX loads
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    cli()
