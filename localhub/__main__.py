"""The local stack for a person: `scripts/local-hub` runs this (`python -m localhub`).

It builds the images when needed, starts the whole stack (stack.py), prints the URL and how to log in,
and on Ctrl-C (or SIGTERM) stops everything and removes the pods.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from localhub.podman import Podman
from localhub.stack import running_stack
from localhub.tools import REPO
from localhub.users import make_users

WORK = REPO / ".work" / "local-hub"


@click.command()
@click.option(
    "--work",
    type=click.Path(path_type=Path),
    default=WORK,
    show_default=True,
    help="Folder for the logs, the node's homes and the shared folder (emptied at start).",
)
@click.option("--no-build", is_flag=True, help="Use the images built before (localhost/berdl-*:test).")
def main(work: Path, no_build: bool) -> None:  # fmt: skip
    """Start BERDL's whole stack on this machine, with stand-ins for KBase, Spark and Kubernetes."""
    if not no_build:
        click.echo("building the images (the first time takes a few minutes)...", err=True)
        Podman().build_images()
    users = make_users("alice", "bob")
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with running_stack(work, users) as stack:
        click.echo(f"\nBERDL is running at {stack.public_url}/\n")
        names = " or ".join(u.name for u in users)
        click.echo(f"  Open it, press 'Sign in with KBase', and pick {names} on the KBase login stand-in.")
        click.echo(f"\nlogs: {work / 'logs'}\nhomes: {stack.home('alice').parent}\nCtrl-C stops everything.")
        stopped.wait()
        click.echo("stopping: the hub, the proxy, the database, and the pods...", err=True)
    click.echo("stopped; no pod is left.", err=True)


if __name__ == "__main__":
    sys.exit(main())
