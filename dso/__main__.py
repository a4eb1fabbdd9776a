"""`python -m dso` runs the command line."""

from dso.interfaces.cli import main

main()
