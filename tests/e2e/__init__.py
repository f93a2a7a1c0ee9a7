"""The whole system end to end: a browser, the real hub, proxy, database and images, on one machine."""

import sys
from pathlib import Path

# tests/hub's helpers import each other by their bare names (pytest puts tests/hub on sys.path when it
# collects it); make that hold when only tests/e2e runs, and for scripts/local-hub.
_HUB_TESTS = str(Path(__file__).resolve().parents[1] / "hub")
if _HUB_TESTS not in sys.path:
    sys.path.insert(0, _HUB_TESTS)
