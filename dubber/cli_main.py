"""``python -m dubber.cli_main ...`` runs the ``dub`` command (for benchmarks and tests)."""

from dubber.cli import main

if __name__ == "__main__":
    main()
