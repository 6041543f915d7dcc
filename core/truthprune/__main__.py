"""``python -m truthprune`` runs the CLI."""

from truthprune.cli.main import main

main()
