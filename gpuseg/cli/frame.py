"""What every command runs in: one-line errors, exit codes, signals and the first-run notice.

A project error (:class:`gpuseg.errors.GpusegError`, ValueError, OSError) is one line, ``error: ...``, in the
command line's words (``--min-samples 0``, not ``min_samples=0``), and exit code 1 (2 where the command says
that its ValueErrors are usage errors). Ctrl-C and SIGTERM discard the outputs in progress and exit at once
(130 / 143). Anything unexpected is one line and exit 1; ``GPUSEG_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import typer

from gpuseg._core.cache import cache_dir
from gpuseg._core.version import __version__
from gpuseg.params import PARAMS, names_pattern

_PARAMETER = re.compile(rf"\b({names_pattern()}|out_dir|truth)=(?:'([^']*)'|\(([^)]*)\)|([^\s,;)]*))")


def cli_words(message: str) -> str:
    """A library message in the command line's words.

    Examples
    --------
    >>> cli_words("min_samples=0 must be an integer >= 1")
    '--min-samples 0 must be an integer >= 1'
    >>> cli_words("device='gpu' was asked for; use device='cpu'")
    '--device gpu was asked for; use --device cpu'
    >>> cli_words("overwrite=True replaces them; xy_scale=None is colour only")
    '--overwrite replaces them; --xy-scale 0 is colour only'
    >>> cli_words("pictures=('sepia',) is not ...")
    '--save sepia is not ...'
    """

    def option(match: re.Match[str]) -> str:
        name = match[1]
        flag = PARAMS[name].flag if name in PARAMS else "--" + name.replace("_", "-")
        if match[3] is not None:  # a tuple
            value = ",".join(part.strip().strip("'") for part in match[3].split(",") if part.strip())
        else:
            value = match[2] if match[2] is not None else match[4]
        if value == "True":
            return flag
        return f"{flag} {'0' if value == 'None' else value}"

    return _PARAMETER.sub(option, message)


def say_error(message: str) -> None:
    """``error: <message>`` on stderr, in the command line's words."""
    typer.secho(f"error: {cli_words(message)}", fg=typer.colors.RED, err=True)


def usage_error(message: str) -> typer.Exit:
    """Say ``message`` and give the exit (code 2) to raise."""
    say_error(message)
    return typer.Exit(2)


def failure_message(exc: BaseException) -> str:
    """One line for an image that failed (``GPUSEG_DEBUG=1`` re-raises it instead)."""
    from gpuseg.errors import GpusegError

    if os.environ.get("GPUSEG_DEBUG"):
        raise exc
    if isinstance(exc, (GpusegError, ValueError, OSError)):
        return cli_words(str(exc))
    return f"unexpected {type(exc).__name__}: {exc} (GPUSEG_DEBUG=1 shows where; please report it)"


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the command unwinds like on Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


@contextlib.contextmanager
def command_frame(finished: Callable[[], str] | None = None, *, usage: bool = False) -> Iterator[None]:
    """Run a command's work: errors as one line and exit 1 (2 for a ValueError when ``usage``); Ctrl-C or
    SIGTERM discards the outputs in progress and exits at once, saying what ``finished()`` kept."""
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except (KeyboardInterrupt, _Terminated) as exc:
        _interrupted(143 if isinstance(exc, _Terminated) else 130, finished() if finished else "")
    except typer.Exit:
        raise
    except Exception as exc:
        if os.environ.get("GPUSEG_DEBUG"):
            raise
        say_error(failure_message(exc))
        raise typer.Exit(2 if usage and isinstance(exc, ValueError) else 1) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(code: int, kept: str = "") -> None:
    """Discard the outputs in progress and exit, without waiting for threads still computing or encoding."""
    import threading

    from gpuseg._core.interrupts import compute_threads_alive
    from gpuseg.io.write import abort_all_outputs

    abort_all_outputs()
    say_error("interrupted; nothing partial was left" + (f"; {kept}" if kept else ""))
    others = (t for t in threading.enumerate() if t.name.startswith("gpuseg-") and t.name != "gpuseg-compute")
    if compute_threads_alive() or any(t.is_alive() for t in others):  # work that would hold the exit up
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


@contextlib.contextmanager
def first_run_notice() -> Iterator[None]:
    """Say once per machine, gpuseg and numba version and installed copy of gpuseg (numba's cache is keyed by
    the source files' paths, so a second copy compiles again) that the first run compiles the kernels."""
    import hashlib
    from importlib import metadata

    copy = hashlib.sha1(str(Path(__file__).resolve().parent).encode()).hexdigest()[:10]
    marker = cache_dir() / f"kernels-{__version__}-numba-{metadata.version('numba')}-{copy}.ready"
    first = not marker.exists()
    if first:
        typer.echo(
            f"first run: compiling gpuseg's kernels for this machine (10-20 s, cached in "
            f"{os.environ.get('NUMBA_CACHE_DIR', 'numba cache')})",
            err=True,
        )
    yield
    if first:
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
