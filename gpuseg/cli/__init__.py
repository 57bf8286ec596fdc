"""The ``gpuseg`` command line: thin commands over the Python API."""
