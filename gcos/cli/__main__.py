"""`python -m gcos.cli ...` runs the same entry point as the `gcos` script."""

from gcos.cli import main

main()
