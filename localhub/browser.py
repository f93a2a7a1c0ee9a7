"""A real browser for the journey: Debian's chromium driven by playwright (never a downloaded build).

`UserBrowser` is one person's browser window; its methods are what that person does and reads in the
hub and in JupyterLab. Screenshots go to `shots/` for a person to look at when a step fails.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from localhub.tools import ToolMissing

CHROMIUM = Path("/usr/bin/chromium")
#: Cold starts build the first venv and start JupyterLab on 2 busy cores: generous, never asserted on.
SPAWN_TIMEOUT_MS = 600_000
UI_TIMEOUT_MS = 120_000


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium; skipped on a laptop without it, a failure under CI=true."""
    if not CHROMIUM.exists():
        raise ToolMissing("Debian's chromium is not installed (scripts/setup installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class UserBrowser:
    """One person's window on the hub at `public_url`."""

    page: Any
    name: str
    public_url: str
    shots: Path
    visited: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Any, name: str, public_url: str, shots: Path) -> UserBrowser:
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        window = cls(page, name, public_url, shots)
        page.on("framenavigated", lambda frame: frame == page.main_frame and window.visited.append(frame.url))
        shots.mkdir(parents=True, exist_ok=True)
        return window

    def shot(self, what: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{self.name}-{what}.png"))

    def path(self) -> str:
        return self.page.url.removeprefix(self.public_url)

    # --- the hub -------------------------------------------------------------------------------------
    def log_in_on_kbase(self) -> None:
        """From the hub's control panel, through KBase's login page (the stand-in), back to the panel."""
        self.page.goto(f"{self.public_url}/hub/home")
        self.page.wait_for_url(re.compile(r".*/hub/login\?next=.*"))
        self.shot("hub-login")
        self.page.click("a:has-text('KBase')")
        self.page.wait_for_selector(f"button[value={json.dumps(self.name)}]")
        self.shot("kbase-login")
        self.page.click(f"button[value={json.dumps(self.name)}]")
        self.page.wait_for_url(re.compile(r".*/hub/home$"))

    def start_server(self) -> None:
        """Press Start on the control panel; wait through the progress page until JupyterLab is there."""
        self.page.click("#start")
        self.page.wait_for_url(re.compile(r".*/hub/spawn-pending/.*"))
        self.page.wait_for_selector("#progress-message")
        self.shot("spawn-pending")
        self.page.wait_for_url(re.compile(rf".*/user/{self.name}/lab.*"), timeout=SPAWN_TIMEOUT_MS)
        self.wait_for_lab()

    def wait_for_lab(self) -> None:
        """Until JupyterLab has drawn its file browser (it may reopen the last notebook, not the launcher)."""
        self.page.wait_for_selector(".jp-DirListing-content", timeout=SPAWN_TIMEOUT_MS)

    def open_launcher(self) -> None:
        if not self.page.locator(".jp-LauncherCard").first.is_visible():
            self.page.click(".lm-TabBar-addButton[title='New Launcher']")
        self.page.locator(".jp-LauncherCard").first.wait_for()

    def stop_server(self) -> None:
        """Press Stop My Server on the control panel and wait until it offers Start again."""
        self.page.goto(f"{self.public_url}/hub/home")
        self.page.click("#stop")
        # #start is on the page all along (it leads to the running server, and ignores clicks while the
        # server stops); the page hides #stop once the hub has stopped the server.
        self.page.wait_for_selector("#stop", state="hidden", timeout=SPAWN_TIMEOUT_MS)
        self.shot("stopped")

    # --- JupyterLab ----------------------------------------------------------------------------------
    def favorites(self) -> list[str]:
        """The names the favorites panel of the file browser lists (none, when it never shows)."""
        with contextlib.suppress(PlaywrightTimeout):
            self.page.wait_for_selector(".jp-Favorites-item")
        return [item.inner_text().strip() for item in self.page.query_selector_all(".jp-Favorites-item")]

    def folder(self) -> str:
        """The folder the file browser shows, from the server's root ("home/alice")."""
        self.wait_for_lab()
        crumbs = self.page.locator(".jp-FileBrowser .jp-BreadCrumbs-item[data-path]")
        return (crumbs.last.get_attribute("data-path") if crumbs.count() else "").strip("/")

    def open_favorite(self, name: str) -> None:
        """Click a favorite; returns once the file browser shows its folder. Before that, a launcher
        still makes new notebooks in the folder it was in."""
        favorite = self.page.locator(f".jp-Favorites-item:has-text({json.dumps(name)})").first
        path = favorite.get_attribute("data-path")
        favorite.click()
        # The breadcrumbs follow the file browser's refresh, which comes after its change of folder.
        self.page.locator(f".jp-BreadCrumbs-item[data-path$={json.dumps(path)}]").last.wait_for()

    def new_notebook(self) -> None:
        """What a person does first: the launcher's notebook on the default kernel ("Python 3"), in the
        launcher's folder; returns once its kernel is idle."""
        self.open_launcher()
        self.page.click('.jp-LauncherCard[data-category="Notebook"]')
        self.notebook().locator(".jp-Cell .cm-content").first.wait_for()
        # Code typed before the kernel's session is connected is not run: wait until the status bar
        # reports the kernel idle.
        self.page.locator(".jp-StatusBar-TextItem[title^='Change kernel']", has_text="| Idle").wait_for()

    def run_in_new_notebook(self, code: str) -> str:
        """In the launcher's folder, open a notebook on the default kernel, run `code`, return what it
        printed."""
        self.new_notebook()
        return self.run_in_notebook(code)

    def notebook(self) -> Any:
        """The notebook in the current tab (the others stay in the page, hidden)."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def run_in_notebook(self, code: str) -> str:
        """Type `code` into the last cell of the open notebook, run it, return what that cell printed.

        Every snippet of the journey prints one JSON value as its last line: the run is over when the
        cell's output ends with one. A run asked for while the kernel's session is still connecting is
        dropped by JupyterLab (the cell keeps `[ ]:`): then the cell is run again, as a person would.
        """
        return self.printed_by(self.start_in_notebook(code))

    def start_in_notebook(self, code: str) -> Any:
        """Type `code` into the last cell of the open notebook and run it; returns the cell at once, while
        the code may still run (printed_by waits for what it prints)."""
        cells = self.notebook().locator(".jp-Cell")
        cell = cells.nth(cells.count() - 1)  # pinned: Shift+Enter adds a cell below
        cell.locator(".cm-content").click()
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Shift+Enter")
        return cell

    def printed_by(self, cell: Any) -> str:
        """What the cell printed, once its last line is one JSON value (see run_in_notebook)."""
        done = cell.locator(".jp-OutputArea-output").filter(has_text=re.compile(r"[\]}\"\d]\s*$")).first
        prompt = cell.locator(".jp-InputPrompt").first
        for _ in range(UI_TIMEOUT_MS // 5000):
            with contextlib.suppress(PlaywrightTimeout):
                done.wait_for(timeout=5000)
                return cell.locator(".jp-OutputArea").inner_text()
            if prompt.inner_text().strip() == "[ ]:":  # not run, and not running ([*]:)
                cell.locator(".jp-InputArea-prompt").click()
                self.page.keyboard.press("Control+Enter")
        done.wait_for(timeout=5000)
        return cell.locator(".jp-OutputArea").inner_text()

    def json_from_notebook(self, code: str, *, new: bool = False) -> Any:
        """Run `code`, which prints one JSON value as its last line, and return that value."""
        printed = self.run_in_new_notebook(code) if new else self.run_in_notebook(code)
        return json.loads(printed.strip().splitlines()[-1])

    def save_as(self, name: str) -> None:
        """Save the open notebook under `name` (JupyterLab asks for a name at the first save)."""
        self.page.keyboard.press("Control+s")
        self.page.locator(".jp-Dialog input[type=text], .jp-Dialog input:not([type])").first.fill(name)
        self.page.locator(".jp-Dialog .jp-mod-accept").click()
        # The tab takes the new name once the server renamed the file. (Not the file browser's listing: one
        # read while the server renames lists the old name, fails, and may not be read again for minutes.)
        self.page.locator(".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel", has_text=name).first.wait_for()

    def set_lab_setting(self, plugin: str, values: dict[str, Any]) -> None:
        """What the settings editor saves, through the server's settings API; then JupyterLab reloads."""
        url = f"{self.public_url}/user/{self.name}/lab/api/settings/{plugin}"
        xsrf = next(c["value"] for c in self.page.context.cookies(url) if c["name"] == "_xsrf")
        answer = self.page.request.put(
            url, data=json.dumps({"raw": json.dumps(values)}), headers={"X-XSRFToken": xsrf}
        )
        assert answer.ok, f"PUT {url}: {answer.status} {answer.text()[:300]}"
        self.page.reload()
        self.wait_for_lab()

    def terminal_text(self, command: str) -> str:
        """Open a terminal from the launcher, type `command`, return the text the terminal shows.

        The terminal draws on a canvas; its screen-reader mode (a setting) also keeps the text in the page.
        """
        self.set_lab_setting("@jupyterlab/terminal-extension:plugin", {"screenReaderMode": True})
        self.open_launcher()
        self.page.click('.jp-LauncherCard[title="Start a new terminal session"]')
        self.page.locator(".jp-Terminal .xterm-screen").click()
        self.page.keyboard.type(command + "\n")
        screen = self.page.locator(".jp-Terminal .xterm-accessibility-tree")
        screen.filter(has_text=command).wait_for()
        self.page.wait_for_function(
            "() => document.querySelector('.jp-Terminal .xterm-accessibility-tree').innerText.trim()"
            ".split('\\n').length >= 3"
        )
        return screen.inner_text()
