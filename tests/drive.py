"""``python -m lfe.main`` with worker tasks substituted, for tests that run the entry point in a
subprocess: ``python -m tests.drive --task=evaluate=tests.fake_fitness:evaluate --config=...``.
"""

import sys

from absl import app

from lfe import main, worker


def _split(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    tasks, rest = {}, []
    for arg in argv:
        if arg.startswith("--task="):
            name, _, target = arg[len("--task="):].partition("=")
            tasks[name] = target
        else:
            rest.append(arg)
    return tasks, rest


if __name__ == "__main__":
    tasks, argv = _split(sys.argv)
    with worker.substitute(**tasks):
        app.run(main.main, argv=argv, flags_parser=main.parse_flags)
