"""The command line's options, made from the rows of :data:`gpuseg.params.PARAMS`.

Each option parses its text with :meth:`gpuseg.params.Param.parse`, so the command line takes and refuses
exactly what the library does, with the library's message (in the command line's words) and exit code 2.
A command declares the options it has of its own and takes the table's as ``**values``::

    @with_options("eps", "min_samples")
    def command(image: Path, **values): ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from gpuseg.cli.frame import usage_error
from gpuseg.params import PARAMS, Choice, Flag, Names, Param

F = TypeVar("F", bound=Callable[..., Any])


def _text(value: Any) -> str | None:
    """A default as the command line shows it."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    return str(value)


def parser(param: Param, accept: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """The function an option parses its text with: exit 2 with the table's message for a bad value."""

    def parse(text: Any) -> Any:
        try:
            value = param.parse(text)
            return accept(value) if accept else value
        except ValueError as exc:
            message, given = str(exc), f"{param.name}={text!r}"
            if isinstance(text, str) and message.startswith(given):  # the value as it was typed
                message = f"{param.flag} {text!r}{message[len(given) :]}"
            raise usage_error(message) from None

    parse.__name__ = param.name
    return parse


def option(
    name: str,
    *,
    default: Any = inspect.Parameter.empty,
    help: str | None = None,
    accept: Callable[[Any], Any] | None = None,
    multiple: bool = False,
) -> inspect.Parameter:
    """The keyword parameter of a command for the table's row ``name`` (its default unless ``default`` is
    given; ``accept`` checks a parsed value further)."""
    param = PARAMS[name]
    default = param.default if default is inspect.Parameter.empty else default
    if isinstance(param.rule, Flag):
        info = typer.Option(param.flag, metavar="", help=help or param.help)
        annotation: Any = Annotated[bool, info]
    else:
        metavar = param.metavar or (
            "[" + "|".join(param.rule.options) + "]" if isinstance(param.rule, Choice | Names) else "TEXT"
        )
        info = typer.Option(param.flag, parser=parser(param, accept), metavar=metavar, help=help or param.help)
        annotation = Annotated[list[Any] if multiple else Any, info]
        default = None if multiple or default is None else (default if default is ... else _text(default))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_options(*rows: str | inspect.Parameter) -> Callable[[F], F]:
    """Give a command (which takes ``**values``) the options of the table's rows, by name or as made by
    :func:`option`, after its own parameters."""

    def decorate(command: F) -> F:
        hints = get_type_hints(command, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(command).parameters.values()
            if p.kind is not p.VAR_KEYWORD
        ]
        made = [row if isinstance(row, inspect.Parameter) else option(row) for row in rows]
        command.__signature__ = inspect.Signature([*own, *made])  # type: ignore[attr-defined]
        return command

    return decorate


def flag(name: str, help: str) -> Any:
    """A command's own on/off option, such as ``--recursive``."""
    return typer.Option(name, metavar="", help=help)
