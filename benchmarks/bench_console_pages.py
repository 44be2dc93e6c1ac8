"""The console's live events page with 1,000 events (issue 12, item 11: "fast on 1,000-event pages").

Serves the API app with the console (uvicorn in this process, no Ray: what is measured is the page's
own cost and its reads) on a fresh SQLite installation holding `--events` events, each with its own
real face thumbnail, and drives Debian's headless Chromium (Selenium), signed in as an admin. Each of
`--repeats` rounds measures, in the page (`performance.now()`, after two animation frames, i.e. drawn):

- first page: from the navigation's start to the first 200 rows drawn (modules, look-ups, the read);
- to 1,000 rows: "Older events" pressed until 1,000 rows are drawn (four more reads of 200);
- a live event on top of 200 and of 1,000 rows: commit → its row drawn at the top (the feed's poll,
  the SSE message and the prepend; the two are compared to see whether a long list slows the feed);
- j pressed 50 times over the 1,000 rows (the keyboard walk: focus and scroll; dispatched in the page).

The reference, measured in the same run: the same five pages of 200 read by a plain HTTP client
(httpx, no browser), so `console / API` is what the browser adds to the API's own time.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_console_pages.py [--events 1000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

TOKEN = "fw_bench_console_pages_token"
PASSWORD = "bench-pages-pass-123"
ROOT = Path(__file__).resolve().parents[1]
PAGE = 200  # the events page reads 200 events at a time (static/pages/events.js)

# In the page: resolves with [performance.now(), polls] once `test()` holds, two animation frames later
# (drawn). polls == 1: it held already when asked, so the time is an upper bound.
WAIT_DRAWN = """
const [source, done] = [arguments[0], arguments[arguments.length - 1]];
const test = new Function(source);
let polls = 0;
const drawn = () => requestAnimationFrame(() => requestAnimationFrame(() => done([performance.now(), polls])));
const check = () => { polls += 1; if (test()) drawn(); else setTimeout(check, 2); };
check();
"""
ROWS = "document.querySelectorAll('[data-testid=\"feed\"] .ev').length"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(home: Path, db_url: str, count: int, faces: Path) -> int:
    """`count` events over the last day, each with its own thumbnail (a 112-px crop of a real photo at a
    different place), half of them matched to a watch list; returns their camera group's id."""
    from PIL import Image

    from facewatch.settings import load_config
    from storage import orm
    from storage.media import LocalMediaStore
    from storage.unit_of_work import UnitOfWork

    media = LocalMediaStore(load_config({"FACEWATCH_HOME": str(home), "FACEWATCH_DATABASE_URL": db_url}).media_root)
    photo = Image.open(faces / "obama-720p.jpg").convert("RGB")
    now = datetime.now(UTC)
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="bench pages"))
        camera = uow.cameras.add(orm.Camera(name="bench door", camera_group_id=group.id, url="", active=False))
        staff = uow.watch_lists.add(orm.WatchList(name="bench staff", color="#3fb950"))
        uow.flush()
        for n in range(count):
            x, y = 300 + (n * 7) % 500, 40 + (n * 3) % 300
            out = io.BytesIO()
            photo.crop((x, y, x + 300, y + 300)).resize((112, 112)).save(out, "JPEG", quality=80)
            key = media.put(out.getvalue(), "jpg")
            at = now - timedelta(seconds=86_400 * (count - n) / count)
            uow.session.add(orm.Event(
                id=f"page-{n:06d}", camera_id=camera.id, camera_group_id=group.id, timestamp=at, created_at=at,
                bbox=[10, 10, 90, 90], quality=0.8, detection_score=0.99, matched=n % 2 == 0,
                watch_list_id=staff.id if n % 2 == 0 else orm.UNMATCHED_WATCH_LIST_ID,
                confidence=0.9 if n % 2 == 0 else None, thumbnail_key=key, crop_key=key, attributes={}))
        uow.commit()
        return group.id


def add_live_event(db_url: str, group_id: int, event_id: str) -> float:
    from storage import orm
    from storage.unit_of_work import UnitOfWork

    with UnitOfWork(db_url) as uow:
        uow.session.add(orm.Event(id=event_id, camera_group_id=group_id, bbox=[1, 1, 50, 50], quality=0.7,
                                  watch_list_id=orm.UNMATCHED_WATCH_LIST_ID, attributes={}))
        uow.commit()
    return time.time()


def api_pages(url: str, group_id: int, pages: int) -> list[float]:
    """The reference: seconds per page of 200 for a plain HTTP client, first page then cursors."""
    out, cursor = [], None
    with httpx.Client(base_url=url, headers={"Authorization": f"Token {TOKEN}"}, timeout=60) as client:
        for _ in range(pages):
            params: dict[str, Any] = {"camera_group_id": group_id, "limit": PAGE}
            if cursor:
                params["cursor"] = cursor
            started = time.perf_counter()
            response = client.get("/v1/events", params=params)
            out.append(time.perf_counter() - started)
            response.raise_for_status()
            cursor = response.json()["next_cursor"]
    return out


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("FACEWATCH_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.page_load_strategy = "eager"  # back at DOMContentLoaded: the page's own work is timed in it
    driver_path = os.environ.get("FACEWATCH_CHROMEDRIVER", "/usr/bin/chromedriver")
    return webdriver.Chrome(service=Service(executable_path=shutil.which(driver_path) or driver_path), options=options)


def round_in_browser(driver: Any, url: str, db_url: str, group_id: int, n: int) -> dict[str, float]:
    from selenium.webdriver.common.by import By

    late = []

    def until(test: str, timeout: float = 60) -> float:
        from selenium.common.exceptions import TimeoutException

        driver.set_script_timeout(timeout)
        try:
            at, polls = driver.execute_async_script(WAIT_DRAWN, test)
        except TimeoutException:
            state = driver.execute_script(f"return [{ROWS}, location.href, document.querySelector('main').innerText"
                                          ".slice(0, 300)]")
            raise SystemExit(f"round {n}: not within {timeout} s: {test}; the page: {state}") from None
        late.append(polls == 1)
        return float(at)

    def live(label: str) -> float:
        until("return document.querySelector('[data-testid=\"live-state\"]').textContent === 'live'")
        event_id = f"live-{n}-{label}"
        committed = add_live_event(db_url, group_id, event_id)
        until(f"const r = document.querySelector('[data-testid=\"feed\"] .ev'); return r && r.dataset.id === "
              f"'{event_id}'")
        return driver.execute_script("return Date.now()") / 1000 - committed

    driver.get(f"{url}/events?camera_group_id={group_id}")  # returns at DOMContentLoaded (eager)
    first = until(f"return {ROWS} >= {PAGE}")
    first_late = late[-1]
    live_200 = live("200")
    more = driver.find_element(By.XPATH, '//main//button[text()="Older events"]')
    started = driver.execute_script("return performance.now()")
    target = PAGE + 1
    while True:
        driver.execute_script("arguments[0].click()", more)  # the button's own click, wherever it is scrolled
        target += PAGE
        last = until(f"return {ROWS} >= {min(target, 1001)} || !document.querySelector('main p > button:not(.hidden)')")
        if driver.execute_script(f"return {ROWS}") >= 1000 or not more.is_displayed():
            break
    rows = driver.execute_script(f"return {ROWS}")
    live_1000 = live("1000")
    # j dispatched in the page (WebDriver's own key round trips would be most of the time otherwise)
    walk_start = driver.execute_script(
        "document.activeElement && document.activeElement.blur(); const t = performance.now();"
        "for (let i = 0; i < 50; i++)"
        "  document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'j', bubbles: true}));"
        "return t")
    walked = until("const r = document.activeElement.closest && document.activeElement.closest('.ev');"
                   "return r && [...r.parentNode.children].indexOf(r) === 49")
    return {"first_page_ms": first, "first_page_upper_bound": first_late, "to_1000_ms": last - started,
            "rows": rows, "live_200_s": live_200, "live_1000_s": live_1000, "j50_ms": walked - walk_start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import uvicorn

    from facewatch.settings import load_config
    from serve_apps.api.app import create_app
    from storage.db import migrate
    from storage.tokens import ensure_admin
    from storage.unit_of_work import UnitOfWork

    home = Path(tempfile.mkdtemp(prefix="bench-console-pages-"))
    db_url = f"sqlite:///{home / 'fw.db'}"
    config = load_config({"FACEWATCH_HOME": str(home), "FACEWATCH_DATABASE_URL": db_url})
    migrate(db_url)
    with UnitOfWork(db_url) as uow:
        ensure_admin(uow, TOKEN)
    group_id = seed(home, db_url, args.events, args.faces)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    with httpx.Client(base_url=url, headers={"Authorization": f"Token {TOKEN}"}) as client:
        admin = client.get("/v1/users").json()["results"][0]
        client.put(f"/v1/users/{admin['id']}/password", json={"password": PASSWORD}).raise_for_status()

    driver = browser()
    try:
        driver.get(f"{url}/signin")
        driver.set_script_timeout(30)
        driver.execute_async_script(WAIT_DRAWN, "return document.querySelector('#username')")
        driver.find_element("css selector", "#username").send_keys(admin["username"])
        driver.find_element("css selector", "#password").send_keys(PASSWORD)
        driver.find_element("css selector", "#signin").click()
        time.sleep(1)
        api_rounds, rounds = [], []
        round_in_browser(driver, url, db_url, group_id, -1)  # warm-up: caches, the first module compile
        for n in range(args.repeats):
            api_rounds.append(api_pages(url, group_id, 5))
            rounds.append(round_in_browser(driver, url, db_url, group_id, n))
    finally:
        driver.quit()
        server.should_exit = True

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    api_first = statistics.median(r[0] for r in api_rounds) * 1000
    api_more = statistics.median(sum(r[1:]) for r in api_rounds) * 1000
    result = {
        "date": datetime.now(UTC).date().isoformat(), "machine": platform.node(), "events": args.events,
        "repeats": args.repeats, "load_average": os.getloadavg(), "rows_drawn": min(r["rows"] for r in rounds),
        "first_page_upper_bounds": sum(r["first_page_upper_bound"] for r in rounds),
        "first_page_ms": med("first_page_ms"), "api_first_page_ms": api_first,
        "first_page_ratio": med("first_page_ms") / api_first,
        "to_1000_ms": med("to_1000_ms"), "api_four_pages_ms": api_more, "to_1000_ratio": med("to_1000_ms") / api_more,
        "live_on_200_s": med("live_200_s"), "live_on_1000_s": med("live_1000_s"),
        "live_1000_vs_200": med("live_1000_s") / med("live_200_s"), "j50_ms": med("j50_ms"),
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value:.3f}" if isinstance(value, float) else f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
