"""The web console in a real headless Chromium (Debian's chromium + chromium-driver), over Selenium.

Fast tests run the API app (no Ray) under uvicorn in a thread: sign-in, a refused password, a viewer's
navigation. The slow test runs the whole service (`start_service`): enrol from a photo, watch a
matched event of the Hamilton clip arrive in the live feed, open and acknowledge it, search by photo,
draw an ROI on a camera's live snapshot. With FACEWATCH_SCREENSHOTS=1 they write docs/console/*.png.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import threading
import time
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


def test_viewer_sees_no_administration_and_no_hidden_group(driver: WebDriver, app_server: str) -> None:
    api = Api(app_server)
    api("POST", "/v1/watch-lists", json={"name": "Staff (viewers see it)", "color": "#2f81f7"})
    api("POST", "/v1/watch-lists", json={"name": "Secret list", "color": "#ff00ff", "hidden_from_roles": ["viewer"]})
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


# -- the whole service (slow) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from cluster.http_client import wait_healthy
    from cluster.service import start_service, stop_service

    tmp = tmp_path_factory.mktemp("console-service")
    config = make_config(tmp, f"sqlite:///{tmp / 'fw.db'}", FACEWATCH_HTTP_PORT=str(_free_port()),
                         FACEWATCH_ADMIN_TOKEN=ADMIN_TOKEN, FACEWATCH_GALLERY_SHARDS="1")
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
    wait_for(driver, ".tile img", visible=False)
    time.sleep(3)
    shot(driver, "video-wall")
    # Administration of the running service: its jobs (the video's, the camera's) with their nodes.
    driver.get(f"{service}/admin/jobs")
    wait_until(lambda: f"camera {camera['id']}" in main_text(driver), 20, "the camera's job is not listed")
    shot(driver, "admin-jobs")
