// The video wall: 1, 4, 9 or 16 refreshed camera snapshots with the current face boxes, and the live feed.
//
// Which cameras are on it is the API's answer, not a rule of this page: `GET /v1/cameras` lists the
// cameras the caller's role may read (cameras of camera groups hidden from that role are left out,
// storage/visibility.py), and a role that reads no cameras at all (viewers, SPEC §5.2) is refused with
// FORBIDDEN. Such a wall is the live feed alone, full width, saying why; the feed itself carries only
// the events the role may see.
import { getAll } from "../api.js";
import { h, clear, errorBox } from "../ui.js";
import { liveView } from "../snapshot.js";
import { openStream } from "../live.js";
import { eventRow, feedContext } from "../feed.js";

export async function render(main) {
  let cameras = [], refused = null, failed = null;
  try {
    cameras = (await getAll("/v1/cameras")).filter((c) => c.active);
  } catch (x) {
    if (x.status === 403) refused = x; else failed = x;
  }
  const ctx = await feedContext();
  const feed = h("div", { class: "feed", "data-testid": "wall-feed" });
  const stream = openStream({}, (e) => {
    feed.prepend(eventRow(e, ctx, { fresh: true }));
    while (feed.childElementCount > 100) feed.lastElementChild.remove();
  });
  if (refused) {
    clear(main, h("div", { class: "toolbar" }, h("h1", { style: { margin: 0 } }, "Video wall")),
      h("p", { class: "msg", "data-testid": "wall-no-cameras" },
        "Your role does not see cameras, so the wall shows no live views: only the live events of the camera groups and watch lists your role sees."),
      h("div", { class: "wall feed-only" }, h("div", {}, h("h2", { style: { marginTop: 0 } }, "Live events"), feed)));
    return () => stream.close();
  }
  let size = Number(localStorage.getItem("fw_wall") || 4);
  const tiles = h("div", { class: "tiles", "data-testid": "wall-tiles" });
  let views = [];
  function layout() {
    views.forEach((v) => v.stop()); views = [];
    tiles.className = `tiles n${size}`;
    clear(tiles);
    for (let i = 0; i < size; i++) {
      const cam = cameras[i];
      if (!cam) { tiles.append(h("div", { class: "tile" }, h("div", { class: "none" }, "no camera"))); continue; }
      const v = liveView(cam.id, { interval: size > 4 ? 2000 : 1000 });
      views.push(v);
      tiles.append(h("div", { class: "tile", dataset: { cameraId: cam.id } }, v, h("a", { class: "label", href: `/cameras/${cam.id}` }, cam.name)));
    }
  }
  const picker = h("div", { class: "checks", role: "group", "aria-label": "Grid size" }, [1, 4, 9, 16].map((n) =>
    h("button", { class: "small", "aria-pressed": String(n === size), onclick: (e) => {
      size = n; localStorage.setItem("fw_wall", String(n));
      picker.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b === e.target)));
      layout();
    } }, `${n}`)));
  clear(main, h("div", { class: "toolbar" }, h("h1", { style: { margin: 0 } }, "Video wall"), picker, h("span", { class: "dim" }, `${cameras.length} active cameras`)),
    failed ? errorBox(failed) : null,
    h("div", { class: "wall" }, tiles, h("div", {}, h("h2", { style: { marginTop: 0 } }, "Live events"), feed)));
  layout();
  return () => { stream.close(); views.forEach((v) => v.stop()); };
}
