"""A renewed KBase token reaches a running notebook server and its kernels (issue 23; the hub's side is
berdl_hub/token_refresh.py).

While a person works in JupyterLab, every request goes from the proxy to this server, and the hub sees
none: after a new KBase login the browser carries a new `kbase_session` cookie that only this server sees,
and `KBASE_AUTH_TOKEN`, read from the server's Secret through `secretKeyRef`, never changes in a running
container. So:

- `server`: a Jupyter server extension notices a new token in its owner's cookie (and only its owner's:
  the server also receives the cookies of anyone who opens it) and forwards it to the hub with the
  server's own API token; once the hub accepted it (Auth2 says it is the owner's and meets the hub's
  rules), it writes it to `~/.berdl_kbase_session` (mode 0600, atomically) and into the server's own
  environment, which new kernels and terminals inherit;
- `kernel`: an IPython extension (loaded in every kernel through /etc/ipython) copies that file into the
  kernel's `os.environ["KBASE_AUTH_TOKEN"]` every `KBASE_TOKEN_SYNC_SECONDS` (30), as BERDL's notebook
  utilities do (`berdl_notebook_utils.kbase_token_cache`), and clears their caches when they are there;
- `tokenfile`: that file, read and written.
"""


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "berdl_token_sync.server"}]
