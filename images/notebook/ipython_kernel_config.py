# Every kernel of the notebook image keeps KBASE_AUTH_TOKEN current (berdl_token_sync.kernel): a renewed
# KBase token reaches kernels started before it. Appended, so that a user's own extensions stay; a user
# whose ~/.ipython config sets `extensions` outright replaces this list, and the renewal with it.
c = get_config()  # type: ignore[name-defined]  # noqa: F821  (IPython provides it)
c.InteractiveShellApp.extensions.append("berdl_token_sync.kernel")
