"""`chaos` and `python -m chaos`: the CLI, with Ctrl-C during its import handled.

Importing the CLI (click, then what a command needs) takes tens of milliseconds; a Ctrl-C
then would print a KeyboardInterrupt traceback and exit 1. Nothing is applied before the
CLI runs, so it exits 130 quietly, as a stopped run does. (SIGTERM there keeps its default:
death by the signal, which a shell shows as 143.)
"""

import sys


def main() -> None:
    try:  # the first import too: a Ctrl-C can land in any of them
        from chaos import startup

        startup.pause()  # until the command has loaded what it needs (chaos/startup.py)
        from chaos import fastrun

        cached_run = fastrun.prepare(sys.argv[1:])  # scenarios validated before: no click
        if cached_run is None:
            from chaos.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    if cached_run is not None:
        sys.exit(cached_run())
    cli_main()


if __name__ == "__main__":
    main()
