"""`python -m dso` runs the command line."""

from dso.cli import main

main()
