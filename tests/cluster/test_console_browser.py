"""The web console in a real headless Chromium (Debian's chromium + chromium-driver), over Selenium.

Fast tests run the API app (no Ray) under uvicorn in a thread, with rows written into its database where
a Ray part would write them (events, episodes, deliveries, a camera's snapshot through the camera job's
own writer): sign-in, a refused password, a viewer's navigation, tokens, persons, the video wall by role,
the live feed's controls, alerts and back/forward return, episodes, administration, camera status,
keyboard, a phone, a matched row's dossier photo, confidence and colour, and the requests every page
makes. The slow tests run the whole service (`start_service`, its settings in `service_config`): enrol
from a photo (and a zip, and the webcam), watch a matched event of the Hamilton clip arrive in the live
feed, open and acknowledge it, search by photo and with its face, a dossier from its face, verify, draw
an ROI on a camera's live snapshot, the wall; several photos chosen at once, each answered in words; a
video's upload, processing and events. With FACEWATCH_SCREENSHOTS=1 they write docs/console/*.png.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _data_dir, make_config

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("FACEWATCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FACEWATCH_CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
ADMIN_TOKEN = "fw_console_browser_admin_token"
PASSWORDS = {"admin": "admin-pass-123", "viewer": "viewer-pass-123", "operator": "operator-pass-123"}


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if importlib.util.find_spec("serve_apps.api.routes.auth") is None:
        return "the sign-in API (POST /v1/auth/login, from the console branch) is not in this tree yet"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} is absent: apt-get install chromium chromium-driver"
    return None


if (_why := _browser_missing()) is not None:
    pytest.skip(_why, allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """The admin's token client for setting the scene (the browser then uses its own session)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Token {ADMIN_TOKEN}"}, timeout=60)

    def __call__(self, method: str, path: str, status: int | tuple[int, ...] = (200, 201, 204), **kw: Any) -> Any:
        response = self.client.request(method, path, **kw)
        wanted = (status,) if isinstance(status, int) else status
        assert response.status_code in wanted, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    def user(self, username: str, role: str) -> dict[str, Any]:
        """A user with a password (the admin exists already; others are created)."""
        users = {u["username"]: u for u in self("GET", "/v1/users", params={"limit": 1000})["results"]}
        user = users.get(username) or self("POST", "/v1/users", json={"username": username, "role": role})
        self("PUT", f"/v1/users/{user['id']}/password", json={"password": PASSWORDS[role]})
        return user

    def admin_username(self) -> str:
        admins = [u for u in self("GET", "/v1/users", params={"limit": 1000})["results"] if u["role"] == "admin"]
        return admins[0]["username"]


WEBCAM_PHOTO = "obama.jpg"  # what the browser's fake webcam shows (one frame, looped)


def _fake_webcam(out: Path) -> Path | None:
    """The webcam Chromium pretends to have: a Y4M file (its format for a fake capture device) of a real
    photo, letterboxed to 640×480. None where the real photos are absent."""
    from PIL import Image

    photo = _data_dir() / "faces" / WEBCAM_PHOTO
    if not photo.is_file():
        return None
    frame = Image.new("RGB", (640, 480))
    picture = Image.open(photo).convert("RGB")
    picture.thumbnail((640, 480))
    frame.paste(picture, ((640 - picture.width) // 2, (480 - picture.height) // 2))
    y, cb, cr = frame.convert("YCbCr").split()  # full-range BT.601: Y4M's C420jpeg
    planes = y.tobytes() + cb.resize((320, 240)).tobytes() + cr.resize((320, 240)).tobytes()
    out.write_bytes(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\nFRAME\n" + planes)
    return out


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--force-device-scale-factor=1", "--lang=en-US",
                "--autoplay-policy=no-user-gesture-required",
                # getUserMedia gets a camera without asking: the file below, else Chromium's test pattern
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        options.add_argument(arg)
    # Every request the pages make, read back from the DevTools network events (test_every_page_…).
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
    if (webcam := _fake_webcam(tmp_path_factory.mktemp("webcam") / "webcam.y4m")) is not None:
        options.add_argument(f"--use-file-for-fake-video-capture={webcam}")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    browser = webdriver.Chrome(service=Service(executable_path=shutil.which(CHROMEDRIVER) or CHROMEDRIVER),
                               options=options)
    # The viewport itself is 1280×800 (the window size would include the browser's own frame).
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    browser.implicitly_wait(0)
    yield browser
    browser.quit()


def wait_for(driver: WebDriver, css: str, timeout: float = 20, visible: bool = True) -> WebElement:
    def found(d: WebDriver) -> WebElement | bool:
        for el in d.find_elements(By.CSS_SELECTOR, css):
            if not visible or el.is_displayed():
                return el
        return False
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(found, f"no {css} within {timeout} s")


def wait_until(what: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(message)


def shot(driver: WebDriver, name: str) -> None:
    """A screenshot for the README, only when asked (so a CI run never dirties the tree)."""
    if os.environ.get("FACEWATCH_SCREENSHOTS") != "1":
        return
    import io

    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.6)  # images and the fade-in of fresh rows settle
    # 256 colours: a third of the size of the browser's own PNG, and the pages are mostly flat colour.
    png = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    png.quantize(colors=256).save(SHOTS / f"{name}.png", optimize=True)


def sign_in(driver: WebDriver, url: str, username: str, password: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{url}/signin")
    wait_for(driver, "#username").send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "#password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#signin").click()
    wait_for(driver, '[data-testid="whoami"]')


def sign_out(driver: WebDriver) -> None:
    driver.find_element(By.CSS_SELECTOR, '[data-testid="signout"]').click()
    wait_for(driver, "#username")


def main_text(driver: WebDriver) -> str:
    """The page's text, or "" while the next page is still loading (no <main> yet)."""
    return " ".join(el.text for el in driver.find_elements(By.CSS_SELECTOR, "main"))


def toasts(driver: WebDriver) -> str:
    """The text of the toasts shown now ("" before the first: their container is made with it)."""
    return driver.execute_script("const t = document.querySelector('.toasts'); return t ? t.textContent : ''")


def nav_titles(driver: WebDriver) -> list[str]:
    return [a.text.split("\n")[0].strip() for a in driver.find_elements(By.CSS_SELECTOR, ".nav nav a")]


# -- the API app alone (fast) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def console_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fast tests' FACEWATCH_HOME: its `fw.db` is the API app's database (to set a scene in)."""
    return tmp_path_factory.mktemp("console")


@pytest.fixture(scope="module")
def app_server(console_home: Path) -> Iterator[str]:
    import uvicorn

    from serve_apps.api.app import create_app
    from storage.db import migrate
    from storage.tokens import ensure_admin
    from storage.unit_of_work import UnitOfWork

    tmp = console_home
    config = make_config(tmp, f"sqlite:///{tmp / 'fw.db'}")
    app = create_app(config)
    migrate(config.database_url)
    with UnitOfWork(config.database_url) as uow:
        ensure_admin(uow, ADMIN_TOKEN)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: server.started, 30, "the API did not start")
    yield url
    server.should_exit = True
    thread.join(10)


def test_sign_in_and_out(driver: WebDriver, app_server: str) -> None:
    api = Api(app_server)
    admin = api.admin_username()
    api.user(admin, "admin")
    driver.get(f"{app_server}/dossiers")  # a deep link: sign in first, then land there
    wait_for(driver, "#username")
    shot(driver, "sign-in")
    driver.find_element(By.CSS_SELECTOR, "#username").send_keys(admin)
    driver.find_element(By.CSS_SELECTOR, "#password").send_keys(PASSWORDS["admin"])
    driver.find_element(By.CSS_SELECTOR, "#signin").click()
    assert wait_for(driver, '[data-testid="whoami"]').text == admin
    wait_until(lambda: driver.current_url.endswith("/dossiers"), 10, driver.current_url)
    assert "Administration" in nav_titles(driver)
    session = {c["name"]: c for c in driver.get_cookies()}
    assert session["fw_session"]["httpOnly"] is True
    sign_out(driver)
    driver.get(f"{app_server}/events")
    wait_for(driver, "#username")  # the session is gone: back to the sign-in page


def test_wrong_password_is_refused_with_a_message(driver: WebDriver, app_server: str) -> None:
    api = Api(app_server)
    admin = api.admin_username()
    api.user(admin, "admin")
    driver.delete_all_cookies()
    driver.get(f"{app_server}/signin")
    wait_for(driver, "#username").send_keys(admin)
    driver.find_element(By.CSS_SELECTOR, "#password").send_keys("not-the-password")
    driver.find_element(By.CSS_SELECTOR, "#signin").click()
    error = wait_for(driver, '[data-testid="signin-error"] .msg')
    assert "Wrong username or password" in error.text or "Too many" in error.text
    shot(driver, "sign-in-refused")
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="whoami"]')
    assert "fw_session" not in {c["name"] for c in driver.get_cookies()}


def test_viewer_sees_no_administration_and_no_hidden_group(driver: WebDriver, app_server: str,
                                                           console_home: Path) -> None:
    api = Api(app_server)
    api("POST", "/v1/watch-lists", json={"name": "Staff (viewers see it)", "color": "#2f81f7"})
    api("POST", "/v1/watch-lists", json={"name": "Secret list", "color": "#ff00ff", "hidden_from_roles": ["viewer"]})
    lobby = api("POST", "/v1/camera-groups", json={"name": "viewer: lobby"})["id"]
    vault = api("POST", "/v1/camera-groups", json={"name": "viewer: vault", "hidden_from_roles": ["viewer"]})["id"]
    in_lobby, in_vault = (_add_events(console_home, 1, camera_group_id=g)[0] for g in (lobby, vault))
    api.user("vera", "viewer")
    sign_in(driver, app_server, "vera", PASSWORDS["viewer"])
    titles = nav_titles(driver)
    assert "Administration" not in titles and "Cameras" not in titles, titles
    assert "Live events" in titles and "Dossiers" in titles
    driver.get(f"{app_server}/watch-lists")
    wait_for(driver, "tbody tr td")
    text = driver.find_element(By.CSS_SELECTOR, "main").text
    assert "Staff (viewers see it)" in text and "Secret list" not in text
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="new-list"]')  # viewers read only
    shot(driver, "watch-lists-viewer")
    driver.get(f"{app_server}/events")
    options = wait_until(lambda: [o.text for o in driver.find_elements(
        By.CSS_SELECTOR, 'select[name="watch_list_id"] option')], 20, "no watch-list filter")
    assert "Staff (viewers see it)" in options and "Secret list" not in options
    # The camera group hidden from viewers: its events are not listed, nor opened by their address.
    wait_until(lambda: in_lobby in feed_ids(driver), 20, "the visible group's event is not listed")
    assert in_vault not in feed_ids(driver)
    driver.get(f"{app_server}/events/{in_vault}")
    assert "does not exist" in wait_for(driver, "main .msg.error").text
    driver.get(f"{app_server}/admin/users")
    wait_for(driver, "main h1")
    assert driver.find_element(By.CSS_SELECTOR, "main h1").text == "Not found"
    sign_out(driver)


def test_administration_lists_tokens_and_revokes_one(driver: WebDriver, app_server: str) -> None:
    api = Api(app_server)
    admin = api.admin_username()
    api.user(admin, "admin")
    viewer = api.user("tokia", "viewer")
    created = api("POST", "/v1/tokens", json={"user_id": viewer["id"], "name": "wall display"})
    as_viewer = {"Authorization": f"Token {created['token']}"}
    assert httpx.get(f"{app_server}/v1/events", headers=as_viewer).status_code == 200  # used once: "last used"
    sign_in(driver, app_server, admin, PASSWORDS["admin"])
    driver.get(f"{app_server}/admin/tokens")
    row = wait_for(driver, f'[data-testid="tokens"] tr[data-token-id="{created["id"]}"]')
    cells = [td.text for td in row.find_elements(By.CSS_SELECTOR, "td")]
    assert cells[0] == "wall display" and cells[1] == f"{created['prefix']}…" and cells[2] == "tokia", cells
    assert cells[4] != "never", cells  # the request above is recorded
    assert created["token"] not in driver.find_element(By.CSS_SELECTOR, "main").text
    shot(driver, "administration")
    row.find_element(By.CSS_SELECTOR, '[data-testid="revoke-token"]').click()
    wait_for(driver, "dialog button.danger").click()
    wait_until(lambda: not driver.find_elements(By.CSS_SELECTOR, f'tr[data-token-id="{created["id"]}"]'), 20,
               "the revoked token is still listed")
    assert httpx.get(f"{app_server}/v1/events", headers=as_viewer).status_code == 401
    sign_out(driver)


def test_pages_left_behind_do_not_hold_their_live_feeds_open(driver: WebDriver, app_server: str) -> None:
    """Every console page holds an SSE stream (the events page two). Pages kept in the back/forward cache
    kept theirs connected, and after three page loads the browser's six connections to the host were all
    taken: the next page waited about a minute for the server to end one."""
    api = Api(app_server)
    admin = api.admin_username()
    api.user(admin, "admin")
    sign_in(driver, app_server, admin, PASSWORDS["admin"])
    driver.set_page_load_timeout(20)
    try:
        for _ in range(4):
            for page in ("events", "dossiers"):
                driver.get(f"{app_server}/{page}")
                wait_for(driver, '[data-testid="whoami"]')
        driver.get(f"{app_server}/watch-lists")  # would time out: no free connection left
        wait_for(driver, "main h1")
    finally:
        driver.set_page_load_timeout(300)


def _give_crops(url: str, config: Any, faces: Path, photos: dict[str, str]) -> None:
    """Real faces for the rows' events (their crop keys are placeholders): a 150-px square per person."""
    from io import BytesIO

    from PIL import Image
    from sqlalchemy import select

    from storage import orm
    from storage.media import LocalMediaStore
    from storage.unit_of_work import UnitOfWork

    media = LocalMediaStore(config.media_root)
    keys = {}
    for who, name in photos.items():
        image = Image.open(faces / name).convert("RGB")
        side = min(image.size)
        out = BytesIO()
        image.crop((0, 0, side, side)).resize((150, 150)).save(out, "JPEG")
        keys[f"c/{who}.jpg"] = media.put(out.getvalue(), "jpg")
    with UnitOfWork(url) as uow:
        for event in uow.session.scalars(select(orm.Event).where(orm.Event.crop_key.in_(list(keys)))):
            event.crop_key = keys[event.crop_key]
        uow.commit()


def test_persons_page_grid_timeline_and_corrections(driver: WebDriver, app_server: str, console_home: Path,
                                                    faces_dir: Path) -> None:
    """An operator finds a stranger in the persons grid, reads their history by day, takes one event
    out ("not this person"), merges another person in, and promotes the person to a dossier."""
    from tests.integration.test_persons_api import make_rows

    url = f"sqlite:///{console_home / 'fw.db'}"
    rows = make_rows(url)  # stranger A: 4 events on 3 days, B: 1, C: in a group hidden from viewers
    _give_crops(url, make_config(console_home, url), faces_dir,
                {"a": "obama.jpg", "b": "biden.jpg", "c": "lin-manuel-miranda.png"})
    api = Api(app_server)
    api.user("olga", "operator")
    sign_in(driver, app_server, "olga", PASSWORDS["operator"])
    assert "Persons" in nav_titles(driver)
    driver.get(f"{app_server}/persons")
    wait_for(driver, f'[data-testid="persons-grid"] a.card[data-id="{rows["a"]}"]')
    cards = {int(c.get_attribute("data-id")): c.text for c in driver.find_elements(By.CSS_SELECTOR, "a.card.person")}
    assert {rows["a"], rows["b"], rows["c"]} <= cards.keys()  # operators see every camera group
    assert "4 events · 3 days · 2 cameras" in cards[rows["a"]] and "last seen" in cards[rows["a"]]
    shot(driver, "persons")

    driver.find_element(By.CSS_SELECTOR, f'a.card[data-id="{rows["a"]}"]').click()
    wait_for(driver, '[data-testid="person-timeline"] li.ev')
    days = driver.find_elements(By.CSS_SELECTOR, '[data-testid="person-timeline"] section.day')
    assert len(days) == 3 and len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="person-timeline"] li.ev')) == 4
    shot(driver, "person-timeline")

    def event_count() -> str | None:  # read in the page: the facts are redrawn after each correction
        return driver.execute_script(
            "const el = document.querySelector('[data-testid=\"person-event-count\"]'); return el && el.textContent")

    # "not this person": the newest event leaves; the person keeps 3
    newest = rows["events"]["a"][-1]
    driver.find_element(By.CSS_SELECTOR, f'li.ev[data-id="{newest}"] [data-action="not-this-person"]').click()
    wait_for(driver, "dialog").find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait_until(lambda: event_count() == "3", 20, "count not 3")
    assert not driver.find_elements(By.CSS_SELECTOR, f'li.ev[data-id="{newest}"]')
    assert api("GET", f"/v1/events/{newest}")["person_id"] != rows["a"]

    # merge B in: 3 + 1 events
    wait_for(driver, '[data-testid="person-merge"]').click()
    dialog = wait_for(driver, "dialog")
    dialog.find_element(By.CSS_SELECTOR, 'input[name="other_id"]').send_keys(str(rows["b"]))
    dialog.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait_until(lambda: event_count() == "4", 20, "count not 4")
    assert api("GET", f"/v1/persons/{rows['b']}", status=404)

    # promote to a dossier on the "vip" list, from the first faces offered
    wait_for(driver, '[data-testid="person-promote"]').click()
    dialog = wait_for(driver, "dialog")
    dialog.find_element(By.CSS_SELECTOR, 'input[name="name"]').send_keys("Stranger A")
    for label in dialog.find_elements(By.CSS_SELECTOR, "label.inline"):
        if label.text.strip() == "vip":
            label.find_element(By.CSS_SELECTOR, "input").click()
    assert dialog.find_elements(By.CSS_SELECTOR, 'input[name="event_ids"]:checked')
    dialog.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait_until(lambda: "/dossiers/" in driver.current_url, 20, f"no dossier page: {driver.current_url}")
    dossier_id = int(driver.current_url.rsplit("/", 1)[-1])
    person = api("GET", f"/v1/persons/{rows['a']}")
    assert (person["dossier_id"], person["dossier_name"], person["anonymous"]) == (dossier_id, "Stranger A", False)
    sign_out(driver)


def _add_events(home: Path, n: int, **fields: Any) -> list[str]:
    """`n` events committed now (the live feed's order is the commit's): unmatched unless `fields` say."""
    import uuid

    from storage import orm
    from storage.unit_of_work import UnitOfWork

    ids = []
    with UnitOfWork(f"sqlite:///{home / 'fw.db'}") as uow:
        for _ in range(n):
            ids.append(f"ev-{uuid.uuid4().hex[:16]}")
            uow.session.add(orm.Event(**{"id": ids[-1], "bbox": [40, 30, 140, 150], "quality": 0.8,
                                         "watch_list_id": orm.UNMATCHED_WATCH_LIST_ID, **fields}))
        uow.commit()
    return ids


def _event_with_media(home: Path, faces: Path, photo: str, **fields: Any) -> str:
    """An event whose frame, thumbnail and crop are a real photo (the box: the photo's middle)."""
    from io import BytesIO

    from PIL import Image

    from storage.media import LocalMediaStore

    media = LocalMediaStore(make_config(home, f"sqlite:///{home / 'fw.db'}").media_root)
    image = Image.open(faces / photo).convert("RGB")
    out = BytesIO()
    image.save(out, "JPEG")
    key = media.put(out.getvalue(), "jpg")
    w, h = image.size
    return _add_events(home, 1, frame_key=key, thumbnail_key=key, crop_key=key,
                       bbox=[w * 0.3, h * 0.2, w * 0.7, h * 0.7], **fields)[0]


def feed_ids(driver: WebDriver, testid: str = "feed") -> list[str]:
    """The event ids of a feed's rows, newest first (read in the page: rows are added while we look)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(`[data-testid='${arguments[0]}'] .ev`)].map((r) => r.dataset.id)", testid)


def test_video_wall_shows_the_cameras_the_role_reads_with_their_face_boxes(
        driver: WebDriver, app_server: str, console_home: Path, faces_dir: Path) -> None:
    """Item 7 by the API's rules: an operator's wall has a tile for each camera the operator may read
    (not one of a group hidden from operators), the camera's snapshot with its current face boxes, and
    the API's reason where a camera sends none; a viewer reads no cameras (SPEC §5.2), so a viewer's
    wall is the live feed alone, saying why, with only the events a viewer sees.

    The snapshot files are written by the camera job's own writer (actors/live_view.LiveView) from a real
    photo: this API app runs no camera jobs (the slow journey shows a live RTSP camera's snapshot)."""
    import numpy as np
    from PIL import Image

    from actors.live_view import NOT_RUNNING, LiveView

    api = Api(app_server)
    shown = api("POST", "/v1/camera-groups", json={"name": "wall: entrance"})
    covert = api("POST", "/v1/camera-groups", json={"name": "wall: covert",
                                                   "hidden_from_roles": ["operator", "viewer"]})
    door = api("POST", "/v1/cameras", json={"name": "wall door", "camera_group_id": shown["id"],
                                            "url": "rtsp://127.0.0.1:9/door"})
    idle = api("POST", "/v1/cameras", json={"name": "wall idle", "camera_group_id": shown["id"],
                                            "url": "rtsp://127.0.0.1:9/idle"})
    hidden = api("POST", "/v1/cameras", json={"name": "wall hidden", "camera_group_id": covert["id"],
                                              "url": "rtsp://127.0.0.1:9/hidden"})
    frame = np.asarray(Image.open(faces_dir / "obama.jpg").convert("RGB"))
    height, width = frame.shape[:2]
    box = [width * 0.3, height * 0.15, width * 0.7, height * 0.65]
    media_root = make_config(console_home, f"sqlite:///{console_home / 'fw.db'}").media_root
    views = [LiveView(media_root, camera["id"], interval_s=0.5) for camera in (door, hidden)]
    writing = threading.Event()

    def camera_jobs() -> None:  # what a running job does: faces of the latest detected frame, then the frame
        while not writing.is_set():
            for view in views:
                view.faces([np.array(box)], [7])
                view.frame(frame)
            writing.wait(0.25)

    writer = threading.Thread(target=camera_jobs, daemon=True)
    writer.start()
    try:
        api.user("olga", "operator")
        sign_in(driver, app_server, "olga", PASSWORDS["operator"])
        driver.execute_script("localStorage.setItem('fw_wall', '16')")  # every camera of this shared scene
        driver.get(f"{app_server}/wall")
        tiles = wait_until(lambda: {int(t.get_attribute("data-camera-id")): t for t in driver.find_elements(
            By.CSS_SELECTOR, '[data-testid="wall-tiles"] .tile[data-camera-id]')}, 20, "no camera tile")
        assert door["id"] in tiles and idle["id"] in tiles and hidden["id"] not in tiles, tiles.keys()
        assert "wall hidden" not in main_text(driver)
        face = wait_for(driver, f'.tile[data-camera-id="{door["id"]}"] .frame .box', timeout=30)
        assert face.text == "#7"
        image = driver.find_element(By.CSS_SELECTOR, f'.tile[data-camera-id="{door["id"]}"] .frame img')
        assert driver.execute_script("return arguments[0].naturalWidth", image) == width
        rect = "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height]"
        (ix, iy, iw, ih), (tx, ty, tw, th), (fx, fy, fw, fh) = (
            driver.execute_script(rect, el) for el in (image, tiles[door["id"]], face))
        # The upright photo is shown whole in the 16:9 tile, in its own shape, and the box sits on the face.
        assert tx - 1 <= ix and ix + iw <= tx + tw + 1 and ty - 1 <= iy and iy + ih <= ty + th + 1, (ix, iy, iw, ih)
        assert abs(iw / ih - width / height) < 0.02 and ih >= th - 2, (iw, ih, tw, th)
        scale = iw / width
        assert abs(fx - (ix + box[0] * scale)) <= 3 and abs(fy - (iy + box[1] * scale)) <= 3, (fx, fy, ix, iy, scale)
        assert abs(fw - (box[2] - box[0]) * scale) <= 4 and abs(fh - (box[3] - box[1]) * scale) <= 4, (fw, fh)
        note = wait_for(driver, f'.tile[data-camera-id="{idle["id"]}"] .none')
        assert NOT_RUNNING in note.text
        sign_out(driver)

        api.user("vera", "viewer")
        sign_in(driver, app_server, "vera", PASSWORDS["viewer"])
        driver.get(f"{app_server}/wall")
        assert "does not see cameras" in wait_for(driver, '[data-testid="wall-no-cameras"]').text
        assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="wall-tiles"], .tile, .live-view')
        time.sleep(1)  # the feed is connected
        unseen = _add_events(console_home, 1, camera_id=hidden["id"], camera_group_id=covert["id"])[0]
        seen = _add_events(console_home, 1, camera_id=door["id"], camera_group_id=shown["id"])[0]
        wait_until(lambda: seen in feed_ids(driver, "wall-feed"), 20, "the viewer's wall feed got no event")
        assert unseen not in feed_ids(driver, "wall-feed")  # it was committed first: it would be here by now
        assert api("GET", f"/v1/events/{unseen}")["camera_group_id"] == covert["id"]
        sign_out(driver)
    finally:
        writing.set()
        writer.join(5)
        for view in views:
            view.close()


def test_live_feed_reopens_after_a_back_forward_return(driver: WebDriver, app_server: str,
                                                       console_home: Path) -> None:
    """A page left for another is kept in the back/forward cache with its live feed closed (see
    test_pages_left_behind_…); back on it, the feed reopens after the last event it had: the events
    committed while it was away arrive, then new ones, each once."""
    api = Api(app_server)
    admin = api.admin_username()
    api.user(admin, "admin")
    sign_in(driver, app_server, admin, PASSWORDS["admin"])
    driver.get(f"{app_server}/events")
    live = wait_for(driver, '[data-testid="live-state"]')
    wait_until(lambda: live.text == "live", 30, "the live feed did not connect")
    driver.execute_script("window.__not_reloaded = 11;")
    before = _add_events(console_home, 1)[0]
    wait_until(lambda: before in feed_ids(driver), 20, "no live event before leaving")
    driver.get(f"{app_server}/watch-lists")
    wait_for(driver, "main h1")
    away = _add_events(console_home, 2)
    driver.back()
    wait_until(lambda: driver.execute_script("return window.__not_reloaded") == 11, 20,
               "the events page was reloaded, not restored from the back/forward cache")
    wait_until(lambda: set(away) <= set(feed_ids(driver)), 30, "the events committed while away did not arrive")
    after = _add_events(console_home, 1)[0]
    wait_until(lambda: after in feed_ids(driver), 30, "no live event after the return")
    ids = feed_ids(driver)
    assert all(ids.count(e) == 1 for e in (before, *away, after)), ids
    assert ids.index(after) < ids.index(away[0]) < ids.index(before)  # newest first


def test_live_feed_filters_counts_pauses_and_acknowledges_every_visible_event(
        driver: WebDriver, app_server: str, console_home: Path) -> None:
    """Item 2: the page's filters hold for the live feed too; the counters count what is shown; paused,
    new events wait (counted on the button) and come in on resume; "acknowledge all visible"
    acknowledges exactly the rows shown."""
    api = Api(app_server)
    group = api("POST", "/v1/camera-groups", json={"name": "feed: gate"})["id"]
    other = api("POST", "/v1/camera-groups", json={"name": "feed: yard"})["id"]
    staff = api("POST", "/v1/watch-lists", json={"name": "feed staff", "color": "#3fb950"})["id"]
    older = _add_events(console_home, 2, camera_group_id=group)
    api.user("olga", "operator")
    sign_in(driver, app_server, "olga", PASSWORDS["operator"])
    driver.get(f"{app_server}/events?camera_group_id={group}")
    wait_until(lambda: set(older) <= set(feed_ids(driver)), 20, "the page did not list the group's events")

    def counter(name: str) -> str:
        return driver.find_element(By.CSS_SELECTOR, f'[data-testid="count-{name}"]').text

    assert (counter("total"), counter("matched")) == ("2", "0")
    wait_until(lambda: driver.find_element(By.CSS_SELECTOR, '[data-testid="live-state"]').text == "live", 30,
               "the live feed did not connect")
    pause = driver.find_element(By.CSS_SELECTOR, '[data-testid="pause"]')
    pause.click()
    elsewhere = _add_events(console_home, 1, camera_group_id=other)[0]
    waiting = _add_events(console_home, 1, camera_group_id=group)
    waiting += _add_events(console_home, 1, camera_group_id=group, matched=True, watch_list_id=staff, confidence=0.93)
    wait_until(lambda: pause.text == "Resume (2)", 20, f"paused, the button says {pause.text!r}")
    assert set(feed_ids(driver)) == set(older)
    pause.click()
    wait_until(lambda: set(waiting) <= set(feed_ids(driver)), 10, "resumed, the waiting events are not shown")
    assert (counter("total"), counter("matched")) == ("4", "1") and elsewhere not in feed_ids(driver)
    driver.find_element(By.CSS_SELECTOR, '[data-testid="ack-all"]').click()
    wait_until(lambda: all(api("GET", f"/v1/events/{e}")["acknowledged"] for e in older + waiting), 20,
               "not every visible event was acknowledged")
    assert api("GET", f"/v1/events/{elsewhere}")["acknowledged"] is False
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="feed"] [data-action="ack"]')
    sign_out(driver)


def _dossier_face(home: Path, faces: Path, dossier_id: int, photo: str) -> tuple[int, bytes]:
    """A face of a dossier as enrolment stores it (its photo and a 150-px crop in the media store):
    the face's id and the crop's bytes."""
    from io import BytesIO

    from PIL import Image

    from storage import orm
    from storage.media import LocalMediaStore
    from storage.unit_of_work import UnitOfWork

    media = LocalMediaStore(make_config(home, f"sqlite:///{home / 'fw.db'}").media_root)
    image = Image.open(faces / photo).convert("RGB")
    side = min(image.size)
    out = BytesIO()
    image.crop((0, 0, side, side)).resize((150, 150)).save(out, "PNG")
    crop = out.getvalue()
    with UnitOfWork(f"sqlite:///{home / 'fw.db'}") as uow:
        face = orm.DossierFace(dossier_id=dossier_id, source_key=media.put((faces / photo).read_bytes(), "jpg"),
                               crop_key=media.put(crop, "png"), bbox=[0, 0, side, side], quality=0.9)
        uow.dossier_faces.add(face)
        uow.flush()
        face_id = face.id
        uow.commit()
    return face_id, crop


def test_a_matched_row_shows_the_dossier_photo_its_confidence_and_the_lists_colour(
        driver: WebDriver, app_server: str, console_home: Path, faces_dir: Path) -> None:
    """Item 2's matched row: beside the event's face, the photo of the dossier face it matched (not the
    dossier's first photo, not the event's own image), the confidence, and the watch list's colour on
    the row's edge and its swatch."""
    api = Api(app_server)
    group = api("POST", "/v1/camera-groups", json={"name": "row: porch"})["id"]
    vip = api("POST", "/v1/watch-lists", json={"name": "row: vip", "color": "#a371f7"})
    dossier = api("POST", "/v1/dossiers", json={"name": "Row Obama", "watch_list_ids": [vip["id"]]})
    _dossier_face(console_home, faces_dir, dossier["id"], "biden.jpg")  # the first photo: not the one matched
    face_id, crop = _dossier_face(console_home, faces_dir, dossier["id"], "obama.jpg")
    event = _event_with_media(console_home, faces_dir, "obama2.jpg", camera_group_id=group, matched=True,
                              watch_list_id=vip["id"], dossier_id=dossier["id"], matched_face_id=face_id,
                              confidence=0.8734)
    photo_url = api("GET", f"/v1/dossiers/{dossier['id']}/faces/{face_id}")["crop"]
    api.user("olga", "operator")
    sign_in(driver, app_server, "olga", PASSWORDS["operator"])
    driver.get(f"{app_server}/events?camera_group_id={group}")
    row = wait_for(driver, f'[data-testid="feed"] .ev[data-id="{event}"]')
    beside = wait_until(lambda: row.find_elements(By.CSS_SELECTOR, ".ref img"), 20, "no dossier photo in the row")[0]
    wait_until(lambda: driver.execute_script("return arguments[0].naturalWidth", beside) > 0, 20,
               "the dossier photo did not load in the page")
    assert beside.get_attribute("src") == photo_url
    answer = api.client.get(photo_url)
    assert answer.status_code == 200 and answer.content == crop
    own = row.find_element(By.CSS_SELECTOR, ":scope > img").get_attribute("src")
    assert own != photo_url and own == api("GET", f"/v1/events/{event}")["media"]["thumbnail"]
    assert row.find_element(By.CSS_SELECTOR, ".conf").text == "87.3%"
    wait_until(lambda: "Row Obama" in row.text, 20, "the dossier's name is not shown")
    purple = "rgb(163, 113, 247)"  # #a371f7
    edge, swatch = driver.execute_script("return [getComputedStyle(arguments[0]).borderLeftColor, "
                                         "getComputedStyle(arguments[0].querySelector('.swatch')).backgroundColor]",
                                         row)
    assert (edge, swatch) == (purple, purple)
    assert "row: vip" in row.find_element(By.CSS_SELECTOR, ".meta").text
    sign_out(driver)


def test_a_match_on_a_list_that_needs_acknowledgement_beeps_notifies_and_counts(
        driver: WebDriver, app_server: str, console_home: Path) -> None:
    """Item 2's alerts: with alerts enabled (a click: browsers allow sound and the permission prompt only
    after one), a match on a `require_ack` list sounds the two-tone beep, raises a desktop notification
    that opens the event, and counts in the unacknowledged badge; a match on another list does none of it.
    The page's Notification and AudioContext are the browser's own, wrapped to record their use."""
    api = Api(app_server)
    alarm = api("POST", "/v1/watch-lists", json={"name": "alerts: banned", "color": "#f85149", "require_ack": True})
    calm = api("POST", "/v1/watch-lists", json={"name": "alerts: staff", "color": "#3fb950"})
    api.user("olga", "operator")
    sign_in(driver, app_server, "olga", PASSWORDS["operator"])
    driver.execute_cdp_cmd("Browser.grantPermissions", {"permissions": ["notifications"], "origin": app_server})
    driver.get(f"{app_server}/dossiers")  # any page: the alerts run beside every page
    wait_for(driver, "main h1")
    driver.execute_script("""
        window.__notes = []; window.__tones = 0;
        const Real = window.Notification;
        window.Notification = class extends Real {
          constructor(title, options) { super(title, options); window.__notes.push([title, options.tag]); }
        };
        Object.defineProperty(window.Notification, 'permission', { get: () => Real.permission });
        window.Notification.requestPermission = (...a) => Real.requestPermission(...a);
        const osc = AudioContext.prototype.createOscillator;
        AudioContext.prototype.createOscillator = function () { window.__tones += 1; return osc.call(this); };""")
    badge = driver.find_element(By.CSS_SELECTOR, '[data-testid="unack"]')
    before = int(badge.text.rstrip("+") or 0)
    driver.find_element(By.XPATH, '//button[text()="Enable alerts"]').click()
    wait_until(lambda: "notifications and sound are on" in toasts(driver), 10, "the alerts were not enabled")
    time.sleep(1)  # the alerts' stream is connected
    quiet = _add_events(console_home, 1, matched=True, watch_list_id=calm["id"], confidence=0.9)[0]
    loud = _add_events(console_home, 1, matched=True, watch_list_id=alarm["id"], confidence=0.91)[0]
    wait_until(lambda: driver.execute_script("return window.__notes.length"), 20, "no desktop notification")
    assert driver.execute_script("return window.__notes") == [["alerts: banned: match", loud]]
    assert driver.execute_script("return window.__tones") == 2  # one beep: two tones
    wait_until(lambda: int(badge.text.rstrip("+")) == before + 1, 10, f"the badge says {badge.text}")
    assert quiet != loud
    sign_out(driver)


def test_episodes_list_detail_and_acknowledge(driver: WebDriver, app_server: str, console_home: Path) -> None:
    """Item 4: the episodes list (with its filters) leads to an episode's page with its events; an
    operator acknowledges the episode there, and with it its events."""
    from storage import orm
    from storage.unit_of_work import UnitOfWork

    api = Api(app_server)
    group = api("POST", "/v1/camera-groups", json={"name": "episodes: hall"})["id"]
    with UnitOfWork(f"sqlite:///{console_home / 'fw.db'}") as uow:
        episode = orm.Episode(camera_group_id=group, event_count=2, open=False)
        uow.session.add(episode)
        uow.flush()
        episode_id = episode.id
        uow.commit()
    events = _add_events(console_home, 2, camera_group_id=group, episode_id=episode_id)
    api.user("olga", "operator")
    sign_in(driver, app_server, "olga", PASSWORDS["operator"])
    driver.get(f"{app_server}/episodes?open=false&acknowledged=false")
    wait_for(driver, f'main tbody a[href="/episodes/{episode_id}"]').click()
    wait_until(lambda: driver.current_url.endswith(f"/episodes/{episode_id}"), 10, driver.current_url)
    wait_until(lambda: sorted(driver.execute_script(
        "return [...document.querySelectorAll('main .feed .ev')].map((r) => r.dataset.id)")) == sorted(events), 20,
        "the episode's events are not listed")
    assert "not acknowledged" in main_text(driver)
    driver.find_element(By.XPATH, '//button[text()="Acknowledge the episode"]').click()
    wait_until(lambda: "acknowledged by olga" in main_text(driver), 20, "the episode was not acknowledged")
    assert api("GET", f"/v1/episodes/{episode_id}")["acknowledged"] is True
    assert all(api("GET", f"/v1/events/{e}")["acknowledged"] for e in events)
    driver.get(f"{app_server}/episodes?acknowledged=false")
    wait_for(driver, "main tbody tr")
    assert not driver.find_elements(By.CSS_SELECTOR, f'main tbody a[href="/episodes/{episode_id}"]')
    sign_out(driver)


def test_administration_users_webhook_deliveries_settings_and_audit(
        driver: WebDriver, app_server: str, console_home: Path) -> None:
    """Item 10 beyond tokens and jobs: an admin creates a user with a password, deactivates them and
    resets the password; reads a webhook's recent deliveries with their errors; changes a runtime
    setting; and finds those calls in the audit log."""
    from storage import orm
    from storage.unit_of_work import UnitOfWork

    api = Api(app_server)
    admin = api.admin_username()
    api.user(admin, "admin")
    hook = api("POST", "/v1/webhooks", json={"title": "admin: siem", "url": "http://127.0.0.1:9/siem"})
    with UnitOfWork(f"sqlite:///{console_home / 'fw.db'}") as uow:  # what the dispatcher records
        uow.session.add_all([
            orm.WebhookDelivery(webhook_id=hook["id"], event_ids=["e1", "e2"], attempt=1, ok=False,
                                error="ConnectError: connection refused", duration_ms=3.0),
            orm.WebhookDelivery(webhook_id=hook["id"], event_ids=["e1", "e2"], attempt=2, ok=True,
                                status_code=204, duration_ms=12.0)])
        uow.commit()
    threshold = api("GET", "/v1/settings")["default_threshold"]
    sign_in(driver, app_server, admin, PASSWORDS["admin"])

    driver.get(f"{app_server}/admin/users")
    wait_for(driver, "main tbody tr")
    driver.find_element(By.XPATH, '//main//button[text()="New user"]').click()
    dialog = wait_for(driver, "dialog")
    dialog.find_element(By.CSS_SELECTOR, 'input[name="username"]').send_keys("nina")
    dialog.find_element(By.CSS_SELECTOR, 'select[name="role"] option[value="operator"]').click()
    dialog.find_element(By.CSS_SELECTOR, 'input[name="password"]').send_keys("nina-pass-123")
    dialog.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    nina = wait_until(lambda: {u["username"]: u for u in api("GET", "/v1/users", params={"limit": 1000})["results"]}
                      .get("nina"), 20, "the user was not created")
    assert (nina["role"], nina["active"], nina["has_password"]) == ("operator", True, True)

    def click(xpath: str) -> None:
        """Clicks what `xpath` finds once the list settles (a saved dialog redraws the list under it)."""
        from selenium.common.exceptions import StaleElementReferenceException

        def clicked() -> bool:
            try:
                found = driver.find_elements(By.XPATH, xpath)
                if found:
                    found[0].click()
                return bool(found)
            except StaleElementReferenceException:
                return False

        wait_until(clicked, 20, f"nothing to click at {xpath}")

    nina_row = '//main//tr[td[1][text()="nina"]]'
    click(f'{nina_row}//button[text()="Edit"]')
    dialog = wait_for(driver, "dialog")
    dialog.find_element(By.CSS_SELECTOR, 'input[name="active"]').click()
    dialog.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait_until(lambda: not api("GET", f"/v1/users/{nina['id']}")["active"], 20, "nina was not deactivated")
    click(f'{nina_row}[td[3]//text()="no"]//button[text()="Reset password"]')  # the list redrawn: inactive
    dialog = wait_for(driver, "dialog")
    dialog.find_element(By.CSS_SELECTOR, 'input[name="password"]').send_keys("nina-new-pass-456")
    dialog.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait_until(lambda: "Password set." in toasts(driver), 20, "the password was not set")

    driver.get(f"{app_server}/admin/webhooks")
    click('//main//tr[td[1][text()="admin: siem"]]//button[text()="Deliveries"]')
    wait_until(lambda: "recent deliveries" in main_text(driver).lower(), 20, "no deliveries shown")  # h2: capitals
    text = main_text(driver)
    assert "ConnectError: connection refused" in text and "failed" in text and "204" in text, text

    driver.get(f"{app_server}/admin/settings")
    setting = wait_for(driver, 'input[name="default_threshold"]')
    setting.clear()
    setting.send_keys("0.8")
    driver.find_element(By.XPATH, '//main//button[text()="Save"]').click()
    try:
        wait_until(lambda: api("GET", "/v1/settings")["default_threshold"] == 0.8, 20, "the setting was not saved")
    finally:
        api("PATCH", "/v1/settings", json={"default_threshold": threshold})

    driver.get(f"{app_server}/admin/audit")
    wait_for(driver, 'input[name="path_prefix"]').send_keys("/v1/users")
    driver.find_element(By.XPATH, '//main//button[text()="Filter"]').click()

    def audited() -> set[tuple[str, str]]:  # read in the page: the filter redraws the rows
        rows = driver.execute_script("return [...document.querySelectorAll('main tbody tr')].map("
                                     "(r) => [...r.cells].map((c) => c.textContent))")
        return {(cells[2], cells[3]) for cells in rows if len(cells) == 6}

    calls = wait_until(lambda: {("POST", "/v1/users"), ("PATCH", f"/v1/users/{nina['id']}"),
                                ("PUT", f"/v1/users/{nina['id']}/password")} <= audited() and audited(), 20,
                       "the user calls are not in the audit log")
    assert all(path.startswith("/v1/users") for _, path in calls), calls
    sign_out(driver)


def test_cameras_show_status_colours_last_error_statistics_job_and_restart(
        driver: WebDriver, app_server: str, console_home: Path) -> None:
    """Item 6: each camera status has its colour (disabled grey, starting yellow, ok green, degraded
    yellow, failing red); a camera's page shows the last error, the statistics and its job (node,
    attempt, back-off, the job's error); Restart reaches the API and its answer is shown in words (this
    API app runs no job manager, so the answer is 503; the restart itself: tests/cluster/test_video_pipeline)."""
    from datetime import UTC, datetime, timedelta

    from storage import orm
    from storage.unit_of_work import UnitOfWork

    colours = {"disabled": "rgb(110, 118, 129)", "starting": "rgb(210, 153, 34)", "ok": "rgb(63, 185, 80)",
               "degraded": "rgb(210, 153, 34)", "failing": "rgb(248, 81, 73)"}
    api = Api(app_server)
    admin = api.admin_username()
    api.user(admin, "admin")
    group = api("POST", "/v1/camera-groups", json={"name": "status: yard"})["id"]
    cameras = {status: api("POST", "/v1/cameras", json={"name": f"status {status}", "camera_group_id": group,
                                                        "url": f"rtsp://127.0.0.1:9/{status}"})["id"]
               for status in colours}
    failing = cameras["failing"]
    with UnitOfWork(f"sqlite:///{console_home / 'fw.db'}") as uow:  # what the camera jobs report
        for status, camera_id in cameras.items():
            uow.cameras.get(camera_id).status = status
        row = uow.cameras.get(failing)
        row.status_error, row.stats = "RTSP 401 Unauthorized", {"fps": 12.5, "frames": 900, "faces": 31, "events": 4}
        uow.session.add(orm.Job(kind="camera", camera_id=failing, state="pending", attempts=3, consecutive_failures=3,
                                lease_node="node-7f3a9c2e11d4b8", last_error="decoder: connection refused",
                                backoff_until=datetime.now(UTC) + timedelta(minutes=5)))
        uow.commit()
    sign_in(driver, app_server, admin, PASSWORDS["admin"])
    driver.get(f"{app_server}/cameras")
    wait_until(lambda: driver.find_elements(By.XPATH, '//main//tr[td[1]//text()="status failing"]'), 20, "no cameras")
    for status, colour in colours.items():
        tag = driver.find_element(By.XPATH, f'//main//tr[td[1]//text()="status {status}"]/td[2]/span')
        assert tag.text == status
        shown = driver.execute_script("return getComputedStyle(arguments[0], '::before').backgroundColor", tag)
        assert shown == colour, (status, shown)
    assert "RTSP 401 Unauthorized" in driver.find_element(By.XPATH, '//main//tr[td[1]//text()="status failing"]').text

    driver.get(f"{app_server}/cameras/{failing}")
    status = wait_for(driver, '[data-testid="camera-status"] dl')
    text = status.text
    for expected in ("failing", "RTSP 401 Unauthorized", "12.5 fps · 900 frames · 31 faces · 4 events",
                     "pending, attempt 3, node node-7f3a9c2", "Back-off until", "decoder: connection refused"):
        assert expected in text, (expected, text)
    driver.find_element(By.CSS_SELECTOR, '[data-testid="restart"]').click()
    wait_until(lambda: "the job manager is not running" in toasts(driver), 20, f"restart: {toasts(driver)!r}")
    sign_out(driver)


def test_keyboard_alone_signs_in_moves_through_the_feed_acknowledges_and_opens(
        driver: WebDriver, app_server: str, console_home: Path) -> None:
    """Item 11, keyboard-usable: sign in with keys only; Tab reaches the menu and Enter follows a link;
    on the live events j/k move between rows, a acknowledges the row in focus, Enter opens it."""
    from selenium.webdriver.common.keys import Keys

    api = Api(app_server)
    group = api("POST", "/v1/camera-groups", json={"name": "keys: hall"})["id"]
    events = _add_events(console_home, 3, camera_group_id=group)
    api.user("olga", "operator")
    driver.delete_all_cookies()
    driver.get(f"{app_server}/signin")
    wait_for(driver, "#username")
    assert driver.switch_to.active_element.get_attribute("id") == "username"
    ActionChains(driver).send_keys("olga", Keys.TAB, PASSWORDS["operator"], Keys.ENTER).perform()
    wait_for(driver, '[data-testid="whoami"]')

    focused = []
    for _ in range(12):  # Tab from the top of the page into the menu
        ActionChains(driver).send_keys(Keys.TAB).perform()
        element = driver.switch_to.active_element
        focused.append(element.text.split("\n")[0])
        if element.text.startswith("Dossiers"):
            break
    assert focused[-1] == "Dossiers" and "Live events" in focused, focused
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait_until(lambda: driver.current_url.endswith("/dossiers"), 10, driver.current_url)

    driver.get(f"{app_server}/events?camera_group_id={group}")
    wait_until(lambda: len(feed_ids(driver)) == 3, 20, "the events are not listed")
    rows = feed_ids(driver)

    def in_focus() -> str | None:
        return driver.execute_script("const r = document.activeElement.closest('.ev'); return r && r.dataset.id")

    ActionChains(driver).send_keys("j").perform()
    assert in_focus() == rows[0]
    ActionChains(driver).send_keys("j", "j", "k").perform()
    assert in_focus() == rows[1]
    ActionChains(driver).send_keys("a").perform()
    wait_until(lambda: api("GET", f"/v1/events/{rows[1]}")["acknowledged"], 20, "a did not acknowledge")
    assert not api("GET", f"/v1/events/{rows[0]}")["acknowledged"]
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait_until(lambda: driver.current_url.endswith(f"/events/{rows[1]}"), 10, driver.current_url)
    assert set(rows) == set(events)
    sign_out(driver)


def test_phone_shows_the_live_feed_and_an_event_on_one_narrow_screen(
        driver: WebDriver, app_server: str, console_home: Path, faces_dir: Path) -> None:
    """Item 11, usable on a phone (390×844, touch): the menu folds behind its button, the filters fold
    away so the feed is on the first screen, nothing is wider than the screen; the event's frame and
    its details stack, and it can be acknowledged there."""
    api = Api(app_server)
    group = api("POST", "/v1/camera-groups", json={"name": "phone: gate"})["id"]
    event = _event_with_media(console_home, faces_dir, "biden.jpg", camera_group_id=group)
    api.user("olga", "operator")
    sign_in(driver, app_server, "olga", PASSWORDS["operator"])
    overflow = "return document.documentElement.scrollWidth - window.innerWidth"
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True})
    try:
        driver.get(f"{app_server}/events")
        row = wait_for(driver, f'[data-testid="feed"] .ev[data-id="{event}"]')
        assert driver.execute_script(overflow) <= 0
        assert not driver.find_element(By.CSS_SELECTOR, "details.filters").get_attribute("open")
        assert row.location["y"] + row.size["height"] <= 844, row.location
        menu = driver.find_element(By.CSS_SELECTOR, ".menu-toggle")
        links = driver.find_elements(By.CSS_SELECTOR, ".nav nav a")
        assert menu.is_displayed() and not any(a.is_displayed() for a in links)
        menu.click()
        assert "Live events" in [a.text.split("\n")[0] for a in driver.find_elements(By.CSS_SELECTOR, ".nav nav a")
                                 if a.is_displayed()]
        menu.click()

        row.find_element(By.CSS_SELECTOR, "a.name").click()
        wait_until(lambda: driver.current_url.endswith(f"/events/{event}"), 10, driver.current_url)
        frame = wait_for(driver, ".detail .frame img")
        wait_until(lambda: driver.execute_script("return arguments[0].naturalWidth", frame) > 0, 20, "no frame")
        assert driver.execute_script(overflow) <= 0
        details = driver.find_element(By.CSS_SELECTOR, ".detail .panel")
        assert details.location["y"] >= frame.location["y"] + frame.size["height"] - 1  # stacked, not beside
        assert frame.size["width"] <= 390
        wait_for(driver, ".frame .box")
        driver.find_element(By.CSS_SELECTOR, '[data-testid="ack"]').click()
        wait_until(lambda: api("GET", f"/v1/events/{event}")["acknowledged"], 20, "not acknowledged on the phone")
    finally:
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    sign_out(driver)


def _requested_urls(driver: WebDriver) -> list[str]:
    """The URLs requested since the last call, from Chromium's DevTools network events (every request:
    documents, modules, images, fetches, event streams, and those a Content-Security-Policy blocks)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    return urls


def _refusals(driver: WebDriver) -> list[str]:
    """The Content-Security-Policy refusals the page reported since the last call (a request the policy
    stops before it is sent is not in the network events, but the console says so)."""
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


def test_every_page_requests_only_the_facewatch_origin(driver: WebDriver, app_server: str, console_home: Path,
                                                       faces_dir: Path) -> None:
    """Item 11, "no request to any other host": every page of the console, as an admin (who sees them
    all), with something on it, makes requests only to the origin that served it (data: and blob: URLs
    are the page's own). The recorder is shown to catch a request to another host first."""
    from urllib.parse import urlsplit

    api = Api(app_server)
    admin = api.admin_username()
    api.user(admin, "admin")
    group = api("POST", "/v1/camera-groups", json={"name": "hosts: hall"})
    camera = api("POST", "/v1/cameras", json={"name": "hosts cam", "camera_group_id": group["id"],
                                              "url": "rtsp://127.0.0.1:9/x"})
    dossier = api("POST", "/v1/dossiers", json={"name": "hosts dossier"})
    event = _event_with_media(console_home, faces_dir, "obama.jpg", camera_group_id=group["id"],
                              camera_id=camera["id"])
    api("POST", "/v1/webhooks", json={"title": "hosts hook", "url": "http://127.0.0.1:9/hook"})
    origin = urlsplit(app_server)[:2]

    def foreign(urls: list[str]) -> list[str]:
        return [u for u in urls if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u)[:2] != origin]

    driver.delete_all_cookies()
    driver.get(f"{app_server}/signin")
    wait_for(driver, "#username")
    _requested_urls(driver), _refusals(driver)  # what earlier tests left in the logs
    driver.execute_script("fetch('https://cdn.example.net/lib.js').catch(() => {});"
                          "document.body.append(Object.assign(new Image(), {src: 'https://fonts.example.org/f.png'}));")
    caught: list[str] = []

    def both_caught() -> bool:
        caught.extend(foreign(_requested_urls(driver)) + _refusals(driver))
        return all(any(host in c for c in caught) for host in ("cdn.example.net", "fonts.example.org"))

    wait_until(both_caught, 10, f"the recorder missed a request to another host: {caught}")

    pages = ["/signin", "/events", f"/events/{event}", "/episodes", "/persons", "/wall", "/search", "/verify",
             "/dossiers", f"/dossiers/{dossier['id']}", "/dossiers/bulk", "/watch-lists", "/cameras",
             f"/cameras/{camera['id']}", "/videos", "/account", *(f"/admin/{tab}" for tab in
                                                                 ("users", "tokens", "webhooks", "settings",
                                                                  "audit", "jobs"))]
    seen: list[str] = []
    for n, page in enumerate(pages):
        if n == 1:
            sign_in(driver, app_server, admin, PASSWORDS["admin"])
        driver.get(f"{app_server}{page}")
        wait_for(driver, "main h1, .signin form")
        wait_until(lambda: "Loading" not in main_text(driver), 20, f"{page} did not load")
        time.sleep(0.8)  # images, the live view's first snapshot and the streams start
        seen += _requested_urls(driver)
        assert not foreign(seen), (page, foreign(seen))
        assert not (refused := _refusals(driver)), (page, refused)
    paths = {urlsplit(u).path for u in seen}
    assert {"/console/app.js", "/console/style.css", "/v1/events/stream",
            f"/v1/cameras/{camera['id']}/snapshot"} <= paths
    assert any(p.startswith("/v1/media/") for p in paths), "no event image was requested"
    sign_out(driver)


# -- the whole service (slow) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_config() -> dict[str, str]:
    """The whole service's settings beyond the defaults, for its tests to read back. The upload limit is
    small, so that a photo over it is still a small file, yet above every shared photo the journey
    uploads (the largest, lin-manuel-miranda.png, is 504 KB); a video is held to a limit of its own."""
    return {"FACEWATCH_MAX_UPLOAD_BYTES": "600000"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, service_config: dict[str, str]) -> Iterator[str]:
    from cluster.http_client import wait_healthy
    from cluster.service import start_service, stop_service

    tmp = tmp_path_factory.mktemp("console-service")
    config = make_config(tmp, f"sqlite:///{tmp / 'fw.db'}", FACEWATCH_HTTP_PORT=str(_free_port()),
                         FACEWATCH_ADMIN_TOKEN=ADMIN_TOKEN, FACEWATCH_GALLERY_SHARDS="1", **service_config)
    try:
        started = start_service(config, num_cpus=4)
    except Exception as exc:  # noqa: BLE001 - Ray gives its raylet 30 s; a loaded machine can miss that once
        if "timed out during startup" not in str(exc):
            raise
        stop_service()
        started = start_service(config, num_cpus=4)
    try:
        with httpx.Client(base_url=started.url, headers={"Authorization": f"Token {ADMIN_TOKEN}"},
                          timeout=120) as client:
            wait_healthy(client)
        yield started.url
    finally:
        stop_service()


def _no_face_photo(tmp: Path) -> Path:
    from PIL import Image

    path = tmp / "wall.png"
    Image.new("RGB", (400, 300), (128, 140, 150)).save(path)
    return path


def _new_dossier_in_the_console(driver: WebDriver, url: str, name: str, watch_list: str) -> int:
    driver.get(f"{url}/dossiers")
    wait_for(driver, '[data-testid="new-dossier"]').click()
    dialog = wait_for(driver, "dialog")
    dialog.find_element(By.CSS_SELECTOR, 'input[name="name"]').send_keys(name)
    for label in dialog.find_elements(By.CSS_SELECTOR, "label.inline"):
        if label.text.strip() == watch_list:
            label.find_element(By.CSS_SELECTOR, "input").click()
    dialog.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait_until(lambda: "/dossiers/" in driver.current_url and driver.current_url.rsplit("/", 1)[-1].isdigit(),
               20, f"no dossier page: {driver.current_url}")
    return int(driver.current_url.rsplit("/", 1)[-1])


@pytest.fixture(scope="module")
def rtsp_camera(data_dir: Path) -> Iterator[str]:
    """A real live camera: GStreamer's RTSP server looping the Hamilton clip (skips where it is absent)."""
    from tests.rtsp_server import RtspCamera, gstreamer_missing

    if (missing := gstreamer_missing()) is not None:
        pytest.skip(missing)
    with RtspCamera(data_dir / "video" / "short_hamilton_clip.mp4") as camera:
        yield camera.url


@pytest.mark.slow
def test_operator_journey_enrol_live_feed_ack_search_and_camera_roi(
        driver: WebDriver, rtsp_camera: str, service: str, data_dir: Path, faces_dir: Path, tmp_path: Path) -> None:
    api = Api(service)
    admin = api.admin_username()
    api.user(admin, "admin")
    stage = api("POST", "/v1/camera-groups", json={"name": "stage"})
    lobby = api("POST", "/v1/camera-groups", json={"name": "lobby"})
    api("POST", "/v1/watch-lists", json={"name": "cast", "color": "#e3b341", "require_ack": True,
                                         "threshold": 0.85, "camera_group_ids": [stage["id"]]})
    sign_in(driver, service, admin, PASSWORDS["admin"])

    # Enrol Lin-Manuel Miranda from a photo; a photo without a face is refused in words.
    dossier_id = _new_dossier_in_the_console(driver, service, "Lin-Manuel Miranda", "cast")
    photo_input = wait_for(driver, ".drop input[type=file]", visible=False)
    photo_input.send_keys(str(faces_dir / "lin-manuel-miranda.png"))
    wait_for(driver, '[data-testid="enrol-ok"]', timeout=120)
    wait_for(driver, '[data-testid="dossier-faces"] .card img')
    photo_input = driver.find_element(By.CSS_SELECTOR, ".drop input[type=file]")
    photo_input.send_keys(str(_no_face_photo(tmp_path)))
    error = wait_for(driver, '[data-testid="enrol-error"]', timeout=120)
    assert error.get_attribute("data-code") == "NO_FACE" and "No face" in error.text
    shot(driver, "dossier")
    assert api("GET", f"/v1/dossiers/{dossier_id}")["face_count"] == 1
    # Several faces: the boxes are drawn and a click on one enrols that face.
    pair = api("POST", "/v1/dossiers", json={"name": "From a pair"})
    driver.get(f"{service}/dossiers/{pair['id']}")
    wait_for(driver, ".drop input[type=file]", visible=False).send_keys(str(faces_dir / "two_people.jpg"))
    assert wait_for(driver, '[data-testid="enrol-error"]', timeout=120).get_attribute("data-code") == "TOO_MANY_FACES"
    boxes = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".frame button.box.pick"), 20, "no face boxes")
    assert len(boxes) == 2
    shot(driver, "dossier-pick-a-face")
    boxes[0].click()
    wait_for(driver, '[data-testid="enrol-ok"]', timeout=120)
    assert api("GET", f"/v1/dossiers/{pair['id']}")["face_count"] == 1
    # A photo from the webcam (Chromium's fake camera shows a real photo) is enrolled like a chosen file.
    webcam = api("POST", "/v1/dossiers", json={"name": "From the webcam"})
    driver.get(f"{service}/dossiers/{webcam['id']}")
    wait_for(driver, '[data-testid="webcam"]').click()
    video = wait_for(driver, '[data-testid="webcam-video"]')
    wait_until(lambda: driver.execute_script("return arguments[0].videoWidth", video) > 0, 30,
               "the webcam shows nothing")
    shot(driver, "dossier-webcam")
    driver.find_element(By.CSS_SELECTOR, 'dialog button[type="submit"]').click()
    wait_for(driver, '[data-testid="enrol-ok"]', timeout=120)
    assert api("GET", f"/v1/dossiers/{webcam['id']}")["face_count"] == 1

    # Bulk enrolment of a zip: a result per file, the refused one in words.
    archive = tmp_path / "people.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(faces_dir / "alex-lacamoire.png", "Alex Lacamoire.png")
        zf.write(_no_face_photo(tmp_path), "Blank Wall.png")
    driver.get(f"{service}/dossiers/bulk")
    wait_for(driver, ".drop input[type=file]", visible=False).send_keys(str(archive))
    results = wait_for(driver, '[data-testid="bulk-results"]')
    wait_until(lambda: "1 enrolled, 1 failed." in results.text, 180, "no per-file results of the zip")
    per_file = {r.find_elements(By.TAG_NAME, "td")[0].text: r.text for r in driver.find_elements(
        By.CSS_SELECTOR, '[data-testid="bulk-results"] tbody tr')}
    assert "ok" in per_file["Alex Lacamoire.png"] and "No face was found" in per_file["Blank Wall.png"], per_file

    driver.get(f"{service}/dossiers")
    wait_until(lambda: "Lin-Manuel Miranda" in main_text(driver), 20, "no dossier list")
    shot(driver, "dossiers")

    # The live feed is open in one tab; the clip is uploaded from another; the match arrives unreloaded.
    driver.get(f"{service}/events")
    wait_for(driver, '[data-testid="live-state"]')
    wait_until(lambda: driver.find_element(By.CSS_SELECTOR, '[data-testid="live-state"]').text == "live", 30,
               "the live feed did not connect")
    driver.execute_script("window.__still_the_same_page = 42;")
    live_tab = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(f"{service}/videos")
    clip = data_dir / "video" / "short_hamilton_clip.mp4"
    wait_for(driver, '[data-testid="video-file"]').send_keys(str(clip))
    for option in driver.find_elements(By.CSS_SELECTOR, 'select[name="camera_group_id"] option'):
        if option.text == "stage":
            option.click()
    driver.find_element(By.CSS_SELECTOR, '[data-testid="upload-video"]').click()
    wait_until(lambda: "/videos/" in driver.current_url, 120, "the upload did not finish")
    video_id = int(driver.current_url.rsplit("/", 1)[-1])
    shot(driver, "video")
    driver.close()
    driver.switch_to.window(live_tab)

    def matched_row() -> WebElement | None:
        rows = driver.find_elements(By.CSS_SELECTOR, '[data-testid="feed"] .ev[data-matched="true"]')
        return rows[0] if rows else None

    row = wait_until(matched_row, 900, "no matched event reached the live feed")
    assert driver.execute_script("return window.__still_the_same_page") == 42  # no reload
    event_id = row.get_attribute("data-id")
    event = api("GET", f"/v1/events/{event_id}")
    assert event["video_id"] == video_id and event["dossier_id"] == dossier_id
    wait_until(lambda: "Lin-Manuel Miranda" in row.text, 20, "the dossier's name is not shown")
    wait_until(lambda: driver.find_element(By.CSS_SELECTOR, '[data-testid="unack"]').text not in ("", "0"), 30,
               "the unacknowledged counter did not count the require_ack match")
    shot(driver, "live-events")

    # Open it and acknowledge it.
    row.find_element(By.CSS_SELECTOR, "a.name").click()
    wait_until(lambda: driver.current_url.endswith(f"/events/{event_id}"), 10, driver.current_url)
    wait_for(driver, ".frame .box")
    wait_for(driver, '[data-testid="ack"]').click()
    wait_until(lambda: "acknowledged by" in driver.find_element(By.CSS_SELECTOR, '[data-testid="ack-state"]').text,
               20, "the event was not acknowledged")
    assert api("GET", f"/v1/events/{event_id}")["acknowledged"] is True
    shot(driver, "event-detail")

    # Search by photo finds it.
    driver.get(f"{service}/search")
    wait_for(driver, ".drop input[type=file]", visible=False).send_keys(str(faces_dir / "lin-manuel-miranda.png"))
    video_events = {e["id"] for e in api("GET", "/v1/events", params={"video_id": video_id, "limit": 500})["results"]}

    def found() -> set[str]:
        cards = driver.find_elements(By.CSS_SELECTOR, '[data-testid="search-results"] .card[data-event-id]')
        return {c.get_attribute("data-event-id") for c in cards} & video_events

    assert event_id in wait_until(found, 120, "search by photo did not find the event")
    shot(driver, "search")

    # From the event: "search with this face" finds it; "create a dossier from this face" enrols its face.
    driver.get(f"{service}/events/{event_id}")
    wait_for(driver, '[data-testid="search-face"]').click()
    wait_until(lambda: f"event_id={event_id}" in driver.current_url, 10, driver.current_url)
    assert event_id in wait_until(found, 120, "search with the event's face did not find the event")
    driver.get(f"{service}/events/{event_id}")
    wait_for(driver, '[data-testid="dossier-from-face"]').click()
    dialog = wait_for(driver, "dialog")
    dialog.find_element(By.CSS_SELECTOR, 'input[name="name"]').send_keys("Miranda, from the clip")
    dialog.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    wait_until(lambda: "/dossiers/" in driver.current_url and driver.current_url.rsplit("/", 1)[-1].isdigit(),
               120, f"no dossier page: {driver.current_url}")
    from_face = api("GET", f"/v1/dossiers/{driver.current_url.rsplit('/', 1)[-1]}")
    assert (from_face["name"], from_face["face_count"]) == ("Miranda, from the clip", 1), from_face

    # Verify two photos side by side: the same person, then two people.
    driver.get(f"{service}/verify")
    photos = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".drop input[type=file]"), 20, "no drop zones")
    photos[0].send_keys(str(faces_dir / "obama.jpg"))
    photos[1].send_keys(str(faces_dir / "obama2.jpg"))
    verdict = wait_for(driver, '[data-testid="verify-result"] .msg', timeout=120)
    assert verdict.text.startswith("Same person"), verdict.text
    driver.find_elements(By.CSS_SELECTOR, ".drop input[type=file]")[1].send_keys(str(faces_dir / "biden.jpg"))
    wait_until(lambda: driver.find_element(By.CSS_SELECTOR, '[data-testid="verify-result"]').text.startswith(
        "Different people"), 120, "obama and biden were not told apart")

    # A live RTSP camera shows its snapshot (served by its running job); an ROI drawn with the mouse is
    # saved to its stream settings.
    camera = api("POST", "/v1/cameras", json={"name": "lobby door", "camera_group_id": lobby["id"],
                                              "url": rtsp_camera})
    driver.get(f"{service}/cameras/{camera['id']}")
    image = wait_for(driver, '[data-testid="snapshot"] img', timeout=30, visible=False)
    wait_until(lambda: driver.execute_script("return arguments[0].naturalWidth", image) > 0, 240,
               "no snapshot of the live camera")
    ActionChains(driver).move_to_element_with_offset(image, -120, -60).click_and_hold().move_by_offset(160, 90) \
        .move_by_offset(80, 30).release().perform()
    assert "ROI" in wait_for(driver, '[data-testid="region-text"]').text
    driver.find_element(By.CSS_SELECTOR, '[data-testid="save-regions"]').click()
    natural, shown = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].clientWidth]", image)

    def saved_roi() -> list[float] | None:
        return api("GET", f"/v1/cameras/{camera['id']}")["stream_settings"].get("roi")

    roi = wait_until(saved_roi, 20, "the ROI was not saved")
    scale = natural / shown
    assert abs((roi[2] - roi[0]) - 240 * scale) <= 4 * scale and abs((roi[3] - roi[1]) - 120 * scale) <= 4 * scale, roi
    shot(driver, "camera")
    driver.get(f"{service}/wall")
    tile_image = wait_for(driver, f'.tile[data-camera-id="{camera["id"]}"] .frame img', timeout=30, visible=False)
    wait_until(lambda: driver.execute_script("return arguments[0].naturalWidth", tile_image) > 0, 60,
               "the wall shows no picture of the live camera")
    time.sleep(3)
    shot(driver, "video-wall")
    # Administration of the running service: its jobs (the video's, the camera's) with their nodes.
    driver.get(f"{service}/admin/jobs")
    wait_until(lambda: f"camera {camera['id']}" in main_text(driver), 20, "the camera's job is not listed")
    shot(driver, "admin-jobs")


def _photos_enrolment_refuses(tmp: Path, faces: Path, limit: int) -> dict[str, Path]:
    """One photo for each reason enrolment refuses one, by file name: a face too small (about 22 px;
    enrolment needs 30), a face too blurred (quality about 0.22, under the default minimum 0.3), a file
    that is not an image, and an image over the upload limit `limit` (but under the body limit)."""
    import numpy as np
    from PIL import Image, ImageFilter

    obama = Image.open(faces / "obama.jpg").convert("RGB")
    small = obama.copy()
    small.thumbnail((80, 80))
    tiny = Image.new("RGB", (200, 200), (120, 120, 120))
    tiny.paste(small, (50, 50))
    paths = {name: tmp / name for name in ("tiny face.png", "blurred.jpg", "notes.jpg", "too large.png")}
    tiny.save(paths["tiny face.png"])
    obama.filter(ImageFilter.GaussianBlur(20)).save(paths["blurred.jpg"])
    paths["notes.jpg"].write_text("a shopping list, not a photo\n")
    noise = np.random.default_rng(12).integers(0, 256, (480, 480, 3), dtype=np.uint8)  # PNG cannot shrink it
    Image.fromarray(noise).save(paths["too large.png"])
    assert limit < paths["too large.png"].stat().st_size < 1024 * 1024, paths["too large.png"].stat().st_size
    return paths


@pytest.mark.slow
def test_photos_chosen_at_once_each_get_their_own_answer_in_words(
        driver: WebDriver, service: str, service_config: dict[str, str], faces_dir: Path, tmp_path: Path) -> None:
    """Items 2 and 3 of issue #12: several photos chosen at once in a dossier's photo input are each
    answered on a line of their own, and every refusal is in words: a face too small, a face too
    blurred, not an image, a file over the upload limit (naming the setting to raise)."""
    api = Api(service)
    admin = api.admin_username()
    api.user(admin, "admin")
    dossier = api("POST", "/v1/dossiers", json={"name": "Several photos at once"})
    minimum = api("GET", "/v1/settings")["min_dossier_photo_quality"]
    refused = _photos_enrolment_refuses(tmp_path, faces_dir, int(service_config["FACEWATCH_MAX_UPLOAD_BYTES"]))
    chosen = [faces_dir / "obama.jpg", *refused.values()]
    sign_in(driver, service, admin, PASSWORDS["admin"])
    driver.get(f"{service}/dossiers/{dossier['id']}")
    wait_for(driver, ".drop input[type=file]", visible=False).send_keys("\n".join(str(p) for p in chosen))

    def answers() -> dict[str, tuple[str, str | None, str]] | None:
        """file → (its answer's test id, error code, the line's words), once every line has its answer."""
        lines = driver.execute_script("""
            const lines = document.querySelectorAll('[data-testid="enrol-result"] [data-testid="enrol-line"]');
            return [...lines].map((l) => {
              const m = l.querySelector('.msg');
              return [l.dataset.file, m && m.dataset.testid, m && (m.dataset.code || null), l.innerText];
            });""")
        if len(lines) != len(chosen) or not all(testid for _, testid, _, _ in lines):
            return None
        return {name: (testid, code, words) for name, testid, code, words in lines}

    got = wait_until(answers, 240, "not every photo got its answer")
    assert list(got) == [p.name for p in chosen]  # one line per file, in the order chosen
    assert got["obama.jpg"][:2] == ("enrol-ok", None) and "Face enrolled" in got["obama.jpg"][2], got
    codes = {name: code for name, (_, code, _) in got.items()}
    assert codes == {"obama.jpg": None, "tiny face.png": "LOW_QUALITY", "blurred.jpg": "LOW_QUALITY",
                     "notes.jpg": "BAD_IMAGE", "too large.png": "TOO_LARGE"}, got
    words = {name: text for name, (_, _, text) in got.items()}
    assert "too low a quality" in words["tiny face.png"] and "enrolment needs at least 30 px" in words["tiny face.png"]
    assert "too low a quality" in words["blurred.jpg"] and f"below the minimum {minimum:.2f}" in words["blurred.jpg"]
    assert "not an image facewatch can read" in words["notes.jpg"], words
    assert "The file is too large" in words["too large.png"] and "FACEWATCH_MAX_UPLOAD_BYTES" in words["too large.png"]
    shot(driver, "dossier-several-photos")
    assert api("GET", f"/v1/dossiers/{dossier['id']}")["face_count"] == 1
    wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="dossier-faces"] .card')) == 1, 20,
               "the enrolled face is not shown")
    sign_out(driver)


# What the videos page does with its progress bar and message during an upload, recorded in the page
# (the console's own bar and message element; the recorder only listens).
UPLOAD_RECORDER = """
const bar = document.querySelector('[data-testid="upload-progress"]');
const msg = bar.nextElementSibling;
window.__upload = { values: [], shown: [], words: [] };
const own = Object.getOwnPropertyDescriptor(HTMLProgressElement.prototype, "value");
Object.defineProperty(bar, "value", { get() { return own.get.call(this); },
                                      set(v) { window.__upload.values.push(v); own.set.call(this, v); } });
new MutationObserver(() => window.__upload.shown.push(!bar.classList.contains("hidden")))
  .observe(bar, { attributes: true, attributeFilter: ["class"] });
new MutationObserver(() => window.__upload.words.push(msg.textContent))
  .observe(msg, { childList: true, subtree: true, characterData: true });
"""


@pytest.mark.slow
def test_video_upload_shows_its_progress_then_the_processing_then_its_events(
        driver: WebDriver, service: str, data_dir: Path) -> None:
    """Item 5 of issue #12: uploading a video shows the upload's progress, then, on the video's page, the
    processing (status and progress, polled), the final status, and the video's events as they come."""
    api = Api(service)
    admin = api.admin_username()
    api.user(admin, "admin")
    api("POST", "/v1/camera-groups", json={"name": "videos: foyer"})
    clip = data_dir / "video" / "short_hamilton_clip.mp4"
    sign_in(driver, service, admin, PASSWORDS["admin"])
    driver.get(f"{service}/videos")
    wait_for(driver, '[data-testid="video-file"]').send_keys(str(clip))
    for option in driver.find_elements(By.CSS_SELECTOR, 'select[name="camera_group_id"] option'):
        if option.text == "videos: foyer":
            option.click()
    driver.execute_script(UPLOAD_RECORDER)
    # Slowed to 256 KB/s, the 0.6 MB clip takes a few seconds to go up: the bar has something to show.
    unthrottled = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {**unthrottled, "uploadThroughput": 256 * 1024})
    try:
        driver.find_element(By.CSS_SELECTOR, '[data-testid="upload-video"]').click()
        wait_until(lambda: "/videos/" in driver.current_url, 120, "the upload did not finish")
    finally:
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", unthrottled)
    upload = driver.execute_script("return window.__upload")
    assert upload["shown"][:1] == [True] and upload["shown"][-1] is False, upload  # shown, then put away
    assert upload["words"][:1] == ["Uploading…"], upload
    values = upload["values"]
    assert len(values) >= 2 and values == sorted(values) and values[-1] == 1, upload
    video_id = int(driver.current_url.rsplit("/", 1)[-1])

    seen: list[tuple[str, float, int]] = []

    def finished() -> bool:
        status, fraction, rows = driver.execute_script("""
            const s = document.querySelector('[data-testid="video-status"] .status');
            const p = document.querySelector('[data-testid="video-status"] progress');
            const rows = document.querySelectorAll('[data-testid="video-events"] .ev');
            return [s && s.textContent, p && p.value, rows.length];""")
        if status:
            seen.append((status, fraction, rows))
        return status in ("done", "failed", "cancelled")

    wait_until(finished, 600, f"the video was not processed: {seen[-3:]}")
    statuses = [s for s, _, _ in seen]
    assert statuses[-1] == "done", seen
    assert "running" in statuses and set(statuses) <= {"queued", "running", "done"}, seen
    fractions = [f for _, f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1, seen
    assert any(s == "running" and f < 1 for s, f, _ in seen), seen  # the processing was shown under way
    shot(driver, "video-processed")
    events = {e["id"] for e in api("GET", "/v1/events", params={"video_id": video_id, "limit": 500})["results"]}
    assert events, "the clip gave no event"
    wait_until(lambda: set(feed_ids(driver, "video-events")) == events, 30,
               f"the video's page does not list its {len(events)} events: {len(feed_ids(driver, 'video-events'))}")
    video = api("GET", f"/v1/videos/{video_id}")
    head = driver.find_element(By.CSS_SELECTOR, '[data-testid="video-status"]').text
    assert f"{video['matched_count']} matched of {video['events_count']} events" in head, head
    sign_out(driver)
