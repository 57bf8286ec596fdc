"""The HTTP service (``gpuseg serve``): a FastAPI app factory, thin over the library like the command line.

Needs the ``serve`` extra: ``pip install 'gpuseg[serve]'``.
"""

from gpuseg.serve.app import Settings, create_app

__all__ = ["Settings", "create_app"]
