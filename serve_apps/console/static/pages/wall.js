// The video wall: 1, 4, 9 or 16 refreshed camera snapshots with the current face boxes, and the live feed.
import { getAll } from "../api.js";
import { h, clear } from "../ui.js";
import { liveView } from "../snapshot.js";
import { openStream } from "../live.js";
import { eventRow, feedContext } from "../feed.js";

export async function render(main) {
  const cameras = (await getAll("/v1/cameras").catch(() => [])).filter((c) => c.active);
  const ctx = await feedContext();
  let size = Number(localStorage.getItem("fw_wall") || 4);
  const tiles = h("div", { class: "tiles" });
  let views = [];
  const feed = h("div", { class: "feed" });
  function layout() {
    views.forEach((v) => v.stop()); views = [];
    tiles.className = `tiles n${size}`;
    clear(tiles);
    for (let i = 0; i < size; i++) {
      const cam = cameras[i];
      if (!cam) { tiles.append(h("div", { class: "tile" }, h("div", { class: "none" }, "no camera"))); continue; }
      const v = liveView(cam.id, { interval: size > 4 ? 2000 : 1000 });
      views.push(v);
      tiles.append(h("div", { class: "tile" }, v, h("a", { class: "label", href: `/cameras/${cam.id}` }, cam.name)));
    }
  }
  const picker = h("div", { class: "checks", role: "group", "aria-label": "Grid size" }, [1, 4, 9, 16].map((n) =>
    h("button", { class: "small", "aria-pressed": String(n === size), onclick: (e) => {
      size = n; localStorage.setItem("fw_wall", String(n));
      picker.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b === e.target)));
      layout();
    } }, `${n}`)));
  clear(main, h("div", { class: "toolbar" }, h("h1", { style: { margin: 0 } }, "Video wall"), picker, h("span", { class: "dim" }, `${cameras.length} active cameras`)),
    h("div", { class: "wall" }, tiles, h("div", {}, h("h2", { style: { marginTop: 0 } }, "Live events"), feed)));
  layout();
  const stream = openStream({}, (e) => {
    feed.prepend(eventRow(e, ctx, { fresh: true }));
    while (feed.childElementCount > 100) feed.lastElementChild.remove();
  });
  return () => { stream.close(); views.forEach((v) => v.stop()); };
}
