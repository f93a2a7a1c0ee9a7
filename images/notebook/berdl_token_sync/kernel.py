"""The IPython extension every kernel loads (/etc/ipython/ipython_kernel_config.py): a daemon thread
copies `~/.berdl_kbase_session` into `os.environ["KBASE_AUTH_TOKEN"]` when it holds another token, every
`KBASE_TOKEN_SYNC_SECONDS` (30 by default), and then clears the caches of BERDL's notebook utilities
(`berdl_notebook_utils.kbase_token_cache.clear_berdl_token_caches`) where they are installed, so that
clients built with the old token are built again. Only a value in KBase's token form is taken.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from . import tokenfile

log = logging.getLogger("berdl_token_sync")
DEFAULT_SECONDS = 30.0
_started = threading.Event()


def interval() -> float:
    try:
        seconds = float(os.environ.get("KBASE_TOKEN_SYNC_SECONDS", DEFAULT_SECONDS))
    except ValueError:
        return DEFAULT_SECONDS
    return seconds if seconds > 0 else DEFAULT_SECONDS


def sync_once(home: Path | None = None) -> bool:
    """Take the file's token when it differs from the environment's; True when it did."""
    token = tokenfile.read(home or Path.home())
    if token is None or token == os.environ.get("KBASE_AUTH_TOKEN"):
        return False
    os.environ["KBASE_AUTH_TOKEN"] = token
    try:
        from berdl_notebook_utils.kbase_token_cache import clear_berdl_token_caches
    except ImportError:
        return True
    clear_berdl_token_caches()
    return True


def _loop(seconds: float) -> None:
    while True:
        try:
            if sync_once():
                log.info("KBASE_AUTH_TOKEN renewed from %s", tokenfile.FILE_NAME)
        except Exception:  # a thread that dies would stop the renewals for good
            log.exception("berdl_token_sync: the token could not be renewed")
        time.sleep(seconds)


def start() -> None:
    """Start the thread, once per process."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_loop, args=(interval(),), daemon=True, name="berdl-token-sync").start()


def load_ipython_extension(ipython: Any) -> None:
    start()
