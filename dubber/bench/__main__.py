"""``python -m dubber.bench [NAME] [options]``: run one benchmark, or the quick set."""

from __future__ import annotations

import importlib
import sys

from dubber.bench import BENCHMARKS, QUICK


def _usage() -> str:
    rows = "\n".join(f"  {name:<10} {what}" for name, (_, what) in BENCHMARKS.items())
    quick = ", ".join(name for name, _ in QUICK)
    return ("usage: python -m dubber.bench [NAME [options] [--json [FILE]]]\n\n"
            f"benchmarks:\n{rows}\n\nWith no NAME: the quick set ({quick}).\n"
            "python -m dubber.bench NAME --help: the options of one.")


def run(name: str, argv: list[str]) -> int:
    module = importlib.import_module(BENCHMARKS[name][0])
    return int(module.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "list"):
        print(_usage())
        return 0
    if not argv or argv[0].startswith("-"):
        code = 0
        for name, args in QUICK:
            print(f"== {name}", flush=True)
            code = max(code, run(name, [*args, *argv]))
        return code
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"python -m dubber.bench: unknown benchmark {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return run(name, rest)


if __name__ == "__main__":
    sys.exit(main())
