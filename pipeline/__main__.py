"""``python -m pipeline``: the Hydra command line (``pipeline.app.cli``)."""

from pipeline.app import cli

cli()
