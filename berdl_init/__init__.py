"""berdl-init: prepares a BERDL JupyterHub user's home before the notebook server starts."""

__version__ = "0.1.0"
