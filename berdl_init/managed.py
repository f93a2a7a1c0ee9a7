"""The policy for a file berdl-init owns until the user edits it (dotfiles, the kernelspec).

Decided from the ledger, which holds the hash of what berdl-init last wrote at each path:
  absent                          -> write it
  equal to what it should be      -> nothing to do (and it counts as berdl-init's from now on)
  equal to what berdl-init wrote  -> still berdl-init's: replace it
  anything else                   -> the user's: keep it, and write ours beside it as PATH.berdl-new
"""

from __future__ import annotations

from collections.abc import Callable

from berdl_init.errors import UnsafePathError
from berdl_init.plan import Change, PlanContext, WriteFile, kept_mode
from berdl_init.state import sha256

CONFLICT_SUFFIX = ".berdl-new"


def plan_managed_file(
    ctx: PlanContext, path: str, wanted_hash: str, wanted: Callable[[], bytes], mode: int = 0o644
) -> tuple[list[Change], list[str]]:
    """The changes and warnings that bring `path` to the bytes `wanted()`, whose hash is `wanted_hash`.

    `wanted` is called only when the bytes are needed, so a caller can avoid producing them.
    """
    try:
        current = ctx.home.read(path)
    except UnsafePathError as error:
        return _beside(ctx, path, wanted_hash, wanted, mode), [f"{error}; left as it is"]
    current_hash = None if current is None else sha256(current)

    if current_hash == wanted_hash:
        ctx.ledger.files[path] = wanted_hash
        return [], []
    if current is None or ctx.ledger.files.get(path) == current_hash:
        detail = "new" if current is None else "updated"
        if current is not None:
            mode = kept_mode(ctx.home, path, mode)
        return [WriteFile("write", path, detail, data=wanted(), mode=mode, old=current, remember=True)], []
    warning = (
        f"~/{path} has changes of yours and is kept; the current version is in ~/{path}{CONFLICT_SUFFIX}"
    )
    return _beside(ctx, path, wanted_hash, wanted, mode), [warning]


def _beside(
    ctx: PlanContext, path: str, wanted_hash: str, wanted: Callable[[], bytes], mode: int
) -> list[Change]:
    beside = path + CONFLICT_SUFFIX
    try:
        current = ctx.home.read(beside)
    except UnsafePathError:
        current = None  # not a regular file: the rename replaces it, nothing is written through it
    if current is not None and sha256(current) == wanted_hash:
        return []
    return [
        WriteFile(
            "write", beside, "beside your version", data=wanted(), mode=mode, old=current, remember=False
        )
    ]
