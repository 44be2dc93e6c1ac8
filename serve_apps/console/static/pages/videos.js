// Videos: upload with progress (the upload, then the processing), status, the video's events.
import { api, get, getAll, upload } from "../api.js";
import { h, clear, field, toast, errorText, errorBox, statusTag, fmtTime, confirmDialog, emptyRow } from "../ui.js";
import { eventRow, feedContext } from "../feed.js";

export async function render(main, params, { navigate }) {
  if (params.id) return detail(main, Number(params.id), navigate);
  const groups = await getAll("/v1/camera-groups");
  const rows = h("tbody");
  let timer;
  async function load() {
    const page = await get("/v1/videos", { limit: 100 });
    clear(rows, page.results.length ? page.results.map((v) => h("tr", { class: "clickable", onclick: () => navigate(`/videos/${v.id}`) },
      h("td", {}, h("a", { href: `/videos/${v.id}` }, v.name)), h("td", {}, statusTag(v.status)),
      h("td", {}, progressCell(v)), h("td", {}, `${v.matched_count} / ${v.events_count}`),
      h("td", {}, `${v.duration_s.toFixed(1)} s`), h("td", {}, fmtTime(v.created_at)), h("td", { class: "error" }, v.error))) : emptyRow(7, "No video yet."));
    timer = setTimeout(load, 3000);
  }
  const file = h("input", { type: "file", name: "file", accept: "video/*", required: true, "data-testid": "video-file" });
  const group = h("select", { name: "camera_group_id" }, groups.map((g) => h("option", { value: g.id }, g.name)));
  const every = h("input", { type: "number", min: 1, max: 1000, value: 1, style: { width: "70px" } });
  const bar = h("progress", { max: 1, value: 0, class: "hidden", "data-testid": "upload-progress" });
  const msg = h("div");
  const form = h("form", { class: "toolbar", onsubmit: async (e) => {
    e.preventDefault();
    if (!file.files[0]) return;
    const body = new FormData();
    body.append("file", file.files[0], file.files[0].name);
    body.append("camera_group_id", group.value);
    body.append("stream_settings", JSON.stringify({ detect_every_n: Number(every.value) || 1 }));
    bar.classList.remove("hidden"); clear(msg, h("span", { class: "dim" }, "Uploading…"));
    try {
      const v = await upload("/v1/videos", body, (done, total) => { bar.value = total ? done / total : 0; });
      toast(`Uploaded: ${v.name}`, "ok"); navigate(`/videos/${v.id}`);
    } catch (x) { clear(msg, errorBox(x)); } finally { bar.classList.add("hidden"); }
  } }, field("Video file", file), field("Camera group", group), field("Detect every n-th frame", every),
  h("button", { class: "primary", type: "submit", disabled: !groups.length, "data-testid": "upload-video" }, "Upload and process"));
  clear(main, h("h1", {}, "Videos"), groups.length ? null : h("p", { class: "msg error" }, "Create a camera group first (Cameras page)."),
    h("div", { class: "panel" }, form, bar, msg),
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Status", "Progress", "Matched / events", "Duration", "Uploaded", "Error"].map((t) => h("th", {}, t)))), rows));
  await load();
  return () => clearTimeout(timer);
}

function progressCell(v) {
  const f = v.progress.fraction;
  return h("span", {}, h("progress", { max: 1, value: f ?? 0, style: { width: "90px" } }), " ", f != null ? `${Math.round(100 * f)}%` : `${v.progress.frames_done} frames`);
}

async function detail(main, id, navigate) {
  const ctx = await feedContext();
  const head = h("div", { "data-testid": "video-status" });
  const feed = h("div", { class: "feed", "data-testid": "video-events" });
  const seen = new Set();
  let timer;
  async function refresh() {
    const v = await get(`/v1/videos/${id}`);
    clear(head, h("div", { class: "toolbar" }, statusTag(v.status), progressCell(v),
      h("span", {}, `${v.matched_count} matched of ${v.events_count} events`), v.error ? h("span", { class: "error" }, v.error) : null));
    const page = await get("/v1/events", { video_id: id, limit: 500 });
    for (const e of page.results.reverse()) { if (!seen.has(e.id)) { seen.add(e.id); feed.prepend(eventRow(e, ctx, { fresh: true })); } }
    if (!["done", "failed", "cancelled"].includes(v.status)) timer = setTimeout(refresh, 1500);
    return v;
  }
  const v = await get(`/v1/videos/${id}`);
  clear(main, h("h1", {}, v.name, " ", h("button", { class: "small danger", onclick: async () => {
    if (!await confirmDialog("Cancel and delete this video? Its events stay.")) return;
    try { await api("DELETE", `/v1/videos/${id}`); navigate("/videos"); } catch (x) { toast(errorText(x), "error"); }
  } }, "Delete")), head, h("h2", {}, "Events"), feed);
  await refresh();
  return () => clearTimeout(timer);
}
