"""docs/architecture.md names every module of the two programs, so a newcomer finds each one's job there."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_module_is_in_the_architecture_document() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text()
    table = doc[doc.index("## Every module") :]
    modules = [
        *(p.relative_to(REPO / "berdl_init") for p in (REPO / "berdl_init").rglob("*.py")),
        *(p.relative_to(REPO / "hub" / "berdl_hub") for p in (REPO / "hub" / "berdl_hub").glob("*.py")),
    ]
    missing = [
        str(module)
        for module in modules
        if module.name not in ("__init__.py", "__main__.py") and f"`{module}`" not in table
    ]
    assert missing == []
