"""``python -m gpuseg`` and the ``gpuseg`` command: the command line, imported inside :func:`main` so that
Ctrl-C while its libraries load is a clean exit too."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from gpuseg.cli.app import app

        app(prog_name="gpuseg")
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
