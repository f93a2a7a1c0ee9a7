"""Building tiny wheel files by hand, to `pip install --no-index` offline: a package for the shared folder
of the stack, a stand-in for ipykernel (bench/, tests)."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(
    dest: Path, name: str, version: str, files: dict[str, bytes], requires_python: str | None = None
) -> Path:
    """Write `{name}-{version}-py3-none-any.whl` into `dest` holding `files` (wheel path -> bytes).

    The wheel has the three files pip needs in its .dist-info: METADATA (with Requires-Python when
    given), WHEEL and a RECORD with the sha256 and size of every file.
    """
    dist = re.sub(r"[-_.]+", "_", name).lower()
    info = f"{dist}-{version}.dist-info"
    contents = dict(files)
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python is not None:
        metadata += f"Requires-Python: {requires_python}\n"
    contents[f"{info}/METADATA"] = metadata.encode()
    contents[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: berdl-init-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in contents.items()]
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()

    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in contents.items():
            archive.writestr(path, data)
    return wheel


def module_wheel(dest: Path, name: str, version: str = "1.0", requires_python: str | None = None) -> Path:
    """A wheel with one package `name` whose __init__ defines MARKER = name and VERSION = version."""
    source = f"MARKER = {name!r}\nVERSION = {version!r}\n".encode()
    return build_wheel(dest, name, version, {f"{name}/__init__.py": source}, requires_python)


#: Stand-ins for ipykernel's logos: distinct bytes, so a copy is checked byte for byte.
FAKE_LOGOS = {
    "logo-32x32.png": b"\x89PNG\r\n\x1a\n" + b"thirty-two" * 7,
    "logo-64x64.png": b"\x89PNG\r\n\x1a\n" + b"sixty-four" * 13,
    "logo-svg.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n',
}


def fake_ipykernel_wheel(dest: Path) -> Path:
    """An `ipykernel` that is only a package with its resources folder of logos."""
    files = {"ipykernel/__init__.py": b'__version__ = "0.0.1"\n'}
    files.update({f"ipykernel/resources/{name}": data for name, data in FAKE_LOGOS.items()})
    return build_wheel(dest, "ipykernel", "0.0.1", files)
