"""`python -m gcos ...` runs the same entry point as the `gcos` script (e.g. where the scripts directory is not
on PATH, as after a `pip install --user` on Windows)."""

from gcos.cli import main

if __name__ == "__main__":
    main()
