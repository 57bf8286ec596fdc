"""python -m gpuseg"""

from gpuseg.cli import app

app(prog_name="gpuseg")
