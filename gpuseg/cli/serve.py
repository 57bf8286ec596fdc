"""``gpuseg serve``: the HTTP service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gpuseg.cli.frame import command_frame, say_error
from gpuseg.cli.options import option, with_options
from gpuseg.params import DEFAULT_MAX_PIXELS


@with_options(
    "device",
    option("max_pixels", default=DEFAULT_MAX_PIXELS, help="Largest image, checked from its header before decoding."),
)
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless told otherwise).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")] = 8000,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="File holding a token: every route but /v1/health then needs it."),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest request body.")] = 64,
    queue: Annotated[int, typer.Option("--queue", min=1, help="Jobs that may wait for the device; more get 503.")] = 16,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds a request may wait and run before a 504.")
    ] = 300,
    **values: Any,
) -> None:
    """Serve segmentation over HTTP: POST /v1/segment, /v1/cluster; GET /v1/health, /v1/ready, /v1/info, /metrics.

    The schema is at /docs and /openapi.json. SIGTERM or Ctrl-C lets the requests in flight finish, then exits.
    """
    try:
        import uvicorn

        from gpuseg.serve import Settings, create_app
    except ImportError as exc:
        say_error(f"gpuseg serve needs {exc.name}: pip install 'gpuseg[serve]'")
        raise typer.Exit(1) from None
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            say_error(f"--token-file {str(token_file)!r}: cannot read it ({getattr(exc, 'strerror', None) or exc})")
            raise typer.Exit(2) from None
        if not token:
            say_error(f"--token-file {str(token_file)!r} is empty; write the token in it")
            raise typer.Exit(2)
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        typer.echo(f"warning: listening on {host} without --token-file: anyone who reaches it can use it", err=True)
    settings = dict(max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=values["max_pixels"], queue_size=queue)
    with command_frame():
        web_app = create_app(Settings(device=values["device"], token=token, timeout_s=timeout, **settings))
    uvicorn.run(web_app, host=host, port=port, timeout_graceful_shutdown=SHUTDOWN_GRACE_S, log_level="info")


SHUTDOWN_GRACE_S = 30
"""Seconds ``gpuseg serve`` gives the requests in flight to finish on SIGTERM or Ctrl-C."""
