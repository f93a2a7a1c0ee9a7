"""The one error a spawn raises on purpose."""

from __future__ import annotations

from tornado import web


class SpawnRefused(web.HTTPError):
    """A spawn stopped on purpose; JupyterHub shows `jupyterhub_message` to the user, without a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(503, log_message=message.replace("%", "%%"))
        self.jupyterhub_message = message
