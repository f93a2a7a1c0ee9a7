"""The big home the benchmarks run on: many small files in many folders."""

from __future__ import annotations

from pathlib import Path


def fill_home(home: Path, folders: int, files_per_folder: int) -> int:
    """Many small files in many folders, the way a user's data and code pile up; returns how many."""
    for index in range(folders):
        folder = home / "data" / f"d{index:04d}"
        folder.mkdir(parents=True)
        for number in range(files_per_folder):
            (folder / f"f{number:03d}.txt").write_bytes(b"some data\n")
    return folders * files_per_folder
