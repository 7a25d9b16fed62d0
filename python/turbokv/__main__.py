"""Run the command line with ``python -m turbokv``."""

from turbokv.cli import main

main(prog_name="turbokv")
