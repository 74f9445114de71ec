"""`python -m smartapp`: the `smartapp` command."""

from smartapp.cli import main

main()
