"""`python -m gateway` is the `coe` CLI."""

from gateway.cli import main

main()
