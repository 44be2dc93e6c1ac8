// A camera's live view: its snapshot refreshed about once a second (fetched, so the API's reason shows
// when the camera is not running) with the current face boxes from /live-faces drawn over it.
import { api } from "./api.js";
import { h, clear, boxedImage } from "./ui.js";

export function liveView(cameraId, { interval = 1000, faces = true, extraBoxes = () => [], onMessage } = {}) {
  const view = boxedImage("", []);
  const note = h("div", { class: "none hidden" });
  const wrap = h("div", { class: "live-view" }, view, note);
  let url = null, stopped = false, timer = null, liveBoxes = [];
  view.classList.add("hidden"); // until a first frame arrives (no broken-image icon)
  const redraw = () => view.redraw([...liveBoxes, ...extraBoxes()]);
  async function tick() {
    if (stopped) return;
    try {
      const blob = await api("GET", `/v1/cameras/${cameraId}/snapshot`);
      if (faces) {
        const live = await api("GET", `/v1/cameras/${cameraId}/live-faces`).catch(() => null);
        liveBoxes = live ? live.faces.map((f) => ({ bbox: f.bbox, label: f.track_id != null ? `#${f.track_id}` : "" })) : [];
      }
      const next = URL.createObjectURL(blob);
      view.img.onload = () => { if (url) URL.revokeObjectURL(url); url = next; redraw(); };
      view.img.src = next;
      view.classList.remove("hidden"); note.classList.add("hidden");
      wrap.dataset.state = "live";
      if (onMessage) onMessage(null);
    } catch (err) {
      wrap.dataset.state = "none";
      if (!url) view.classList.add("hidden");
      clear(note, err.message || "no snapshot"); note.classList.remove("hidden");
      if (onMessage) onMessage(err);
    }
    if (!stopped) timer = setTimeout(tick, interval);
  }
  tick();
  wrap.view = view;
  wrap.redraw = redraw;
  wrap.stop = () => { stopped = true; clearTimeout(timer); if (url) URL.revokeObjectURL(url); };
  return wrap;
}
