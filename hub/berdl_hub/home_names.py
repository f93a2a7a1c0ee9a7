"""Whether a user's name can name their home folder.

Homes are named by the user's name as KBase spells it (`/mnt/berdl/homes/{unescaped_username}`, mounted
at `/home/{unescaped_username}`), where BERDL's production hub keeps them: so the name must be one path
component. KBase's own names always are (lower-case letters, digits and `_`); JupyterHub allows more (it
refuses only `/`, `.` and `..`, and an API may create users its authenticator never saw).
"""

from __future__ import annotations

from .errors import SpawnRefused

#: The longest file name Linux file systems take (NAME_MAX), in bytes.
NAME_MAX = 255

RULE = (
    "a home folder is named by its user's name, which must be one path component: no '/', no NUL, "
    "not '.' or '..', not starting with '.', at most 255 bytes"
)


def problem(name: str) -> str | None:
    """What keeps `name` from naming one folder, or None when it can."""
    if not name:
        return "it is empty"
    if "/" in name:
        return "it holds '/'"
    if "\0" in name:
        return "it holds a NUL character"
    if name in {".", ".."}:
        return f"it is {name!r}"
    if name.startswith("."):
        # A hidden folder among the homes, or one a file server keeps there (NFS's .snapshot).
        return "it starts with '.'"
    size = len(name.encode("utf-8", errors="surrogatepass"))
    if size > NAME_MAX:
        return f"it is {size} bytes long"
    return None


def refusal(name: str) -> str | None:
    """The one line a spawn for `name` is refused with, or None when the name can name a home."""
    found = problem(name)
    if found is None:
        return None
    return f"The user name {name!r} cannot name a home folder: {found} ({RULE})."


def refuse(name: str) -> None:
    """Refuse the spawn for `name` (SpawnRefused, with `refusal`'s line) when the name cannot name a home:
    before anything is made for it."""
    found = refusal(name)
    if found is not None:
        raise SpawnRefused(found)
