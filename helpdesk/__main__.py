"""`python -m helpdesk` runs the CLI."""

from helpdesk.cli import main

main()
