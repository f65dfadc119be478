"""``python -m cxrbio``: the CLI without an installed entry point (e.g. ``PYTHONPATH=src`` on a machine
where the package cannot be installed because pyradiomics does not build there)."""

from cxrbio.cli.app import app

app(prog_name="cxrbio")
