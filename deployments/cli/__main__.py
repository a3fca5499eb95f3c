"""`python -m deployments.cli`: the same as the `arrears` command."""

from deployments.cli import main

main()
