"""The HTTP service (``gpuseg serve``): a FastAPI app factory, thin over the library like the command line.

Needs the ``serve`` extra: ``pip install 'gpuseg[serve]'``.
"""

from gpuseg.serve.app import create_app
from gpuseg.serve.service import Settings

__all__ = ["Settings", "create_app"]
