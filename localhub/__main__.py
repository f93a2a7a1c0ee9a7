"""The local stack for a person: `scripts/local-hub` runs this (`python -m localhub`).

It builds the images when needed, starts the whole stack (stack.py) in its folder, prints the URL, how to
sign in and where things are, and on Ctrl-C (SIGTERM, SIGHUP) stops everything and removes the pods. The
homes, the hub's database and the users stay for the next start, unless it is started with --fresh.
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
from localhub.users import load_users, make_users

WORK = REPO / ".work" / "local-hub"


@click.command()
@click.option(
    "--work",
    type=click.Path(path_type=Path),
    default=WORK,
    show_default=True,
    help="The stack's folder: the homes, the hub's database, the users and each start's logs, kept from one "
    "start to the next.",
)
@click.option(
    "--fresh", is_flag=True, help="Start from nothing: empty the folder first (homes, database, logs)."
)
@click.option("--no-build", is_flag=True, help="Use the images built before (localhost/berdl-*:test).")
def main(work: Path, fresh: bool, no_build: bool) -> None:
    """Start BERDL's whole stack on this machine, with stand-ins for KBase, Spark and Kubernetes."""
    if not no_build:
        click.echo("building the images (the first time takes a few minutes)...", err=True)
        Podman().build_images()
    users = (None if fresh else load_users(work / "users.json")) or make_users("alice", "bob")
    stopped = threading.Event()
    # A closed terminal (SIGHUP) stops the stack as Ctrl-C does, pods and all.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopped.set())
    with running_stack(work, users, fresh=fresh) as stack:
        names = " or ".join(u.name for u in users)
        for line in stack.leftovers_ended:
            click.echo(f"ended what the last run, which did not stop, left running: {line}", err=True)
        click.echo(f"\nBERDL is running at {stack.public_url}/\n")
        click.echo(f"  Open it, press 'Sign in with KBase' and pick {names} on the KBase login stand-in:")
        click.echo("  signing in starts your server, and JupyterLab opens in your home.\n")
        click.echo(f"  homes: {stack.home(users[0].name).parent}  (kept for the next start; --fresh empties)")
        click.echo(f"  logs:  {stack.log_dir}")
        click.echo("  pods:  images/podman pod ps   (images/podman logs POD-CONTAINER: what one printed)")
        click.echo("\nCtrl-C stops everything.")
        stopped.wait()
        click.echo("stopping: the hub, the proxy, the database, and the pods...", err=True)
    click.echo("stopped; no pod is left.", err=True)


if __name__ == "__main__":
    sys.exit(main())
