// Cameras and camera groups: CRUD, status colours with the last error and statistics, the live snapshot
// with ROI / ROT drawn with the mouse and saved to stream_settings, restart.
import { api, get, getAll } from "../api.js";
import { h, clear, field, dialog, confirmDialog, formValues, toast, errorText, statusTag, emptyRow, fmtTime } from "../ui.js";
import { can, invalidate } from "../state.js";
import { liveView } from "../snapshot.js";

const SETTINGS = [ // the stream settings an operator tunes most; the rest keep their values
  ["detect_every_n", "Detect every n-th frame", { type: "number", min: 1, max: 1000 }],
  ["detect_fps", "Detections per second (live cameras; 0 = every frame)", { type: "number", min: 0, max: 1000, step: 0.5 }],
  ["min_face_size", "Min face size (px)", { type: "number", min: 10, max: 4000 }],
  ["min_quality", "Min quality", { type: "number", min: 0, max: 1, step: 0.01 }],
  ["jpeg_quality", "JPEG quality", { type: "number", min: 1, max: 100 }],
  ["overall_only", "One event per track (best shot)", { type: "checkbox" }],
];

export async function render(main, params, { navigate }) {
  if (params.id) return detail(main, Number(params.id), navigate);
  const groups = await getAll("/v1/camera-groups");
  const groupRows = h("tbody"), camRows = h("tbody");
  let timer;
  async function load() {
    const cams = await getAll("/v1/cameras");
    const byGroup = new Map(groups.map((g) => [g.id, g]));
    clear(camRows, cams.length ? cams.map((c) => h("tr", { class: "clickable", onclick: () => navigate(`/cameras/${c.id}`) },
      h("td", {}, h("a", { href: `/cameras/${c.id}` }, c.name)), h("td", {}, statusTag(c.status)),
      h("td", {}, (byGroup.get(c.camera_group_id) || { name: c.camera_group_id }).name),
      h("td", { class: "mono" }, c.url), h("td", {}, statText(c.stats)), h("td", { class: "error" }, c.status_error))) : emptyRow(6, "No camera yet."));
    clear(groupRows, groups.length ? groups.map((g) => h("tr", {},
      h("td", {}, g.name), h("td", {}, g.active ? "yes" : "no"), h("td", {}, cams.filter((c) => c.camera_group_id === g.id).length),
      h("td", { class: "mono" }, Object.entries(g.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")),
      h("td", {}, (g.hidden_from_roles || []).join(", ")),
      h("td", {}, can.admin() ? [h("button", { class: "small", onclick: () => editGroup(g) }, "Edit"), " ", h("button", { class: "small danger", onclick: () => removeGroup(g) }, "Delete")] : null))) : emptyRow(6, "No camera group yet: create one first."));
    timer = setTimeout(load, 5000);
  }
  async function editGroup(g) {
    const r = await dialog(g.id ? `Camera group “${g.name}”` : "New camera group", h("div", { class: "form" },
      field("Name", h("input", { name: "name", required: true, value: g.name || "" })),
      field("Labels (key=value, comma-separated)", h("input", { name: "labels", value: Object.entries(g.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") })),
      field("Threshold (empty: default)", h("input", { type: "number", name: "threshold", min: 0, max: 1, step: 0.01, value: g.threshold ?? "" })),
      h("label", { class: "inline" }, h("input", { type: "checkbox", name: "active", checked: g.active !== false }), "active"),
      h("label", { class: "inline" }, h("input", { type: "checkbox", name: "deduplicate", checked: !!g.deduplicate }), "deduplicate across cameras"),
      h("div", { class: "wide checks" }, "Hidden from: ", ["operator", "viewer"].map((r) => h("label", { class: "inline" }, h("input", { type: "checkbox", name: "hide_" + r, checked: (g.hidden_from_roles || []).includes(r) }), r))),
      field("Comment", h("textarea", { name: "comment" }, g.comment || ""), "wide")), {
      ok: g.id ? "Save" : "Create", onOk: (f) => {
        const v = formValues(f);
        const labels = Object.fromEntries(v.labels.split(",").map((s) => s.trim()).filter(Boolean).map((s) => { const i = s.indexOf("="); return i < 0 ? [s, ""] : [s.slice(0, i).trim(), s.slice(i + 1).trim()]; }));
        const body = { name: v.name.trim(), labels, threshold: v.threshold, active: v.active, deduplicate: v.deduplicate, comment: v.comment,
          hidden_from_roles: ["operator", "viewer"].filter((r) => v["hide_" + r]) };
        return g.id ? api("PATCH", `/v1/camera-groups/${g.id}`, { json: body }) : api("POST", "/v1/camera-groups", { json: body });
      } });
    if (r) { invalidate("/v1/camera-groups"); render(main, params, { navigate }); }
  }
  async function removeGroup(g) {
    if (!await confirmDialog(`Delete the camera group “${g.name}”?`)) return;
    try { await api("DELETE", `/v1/camera-groups/${g.id}`); invalidate("/v1/camera-groups"); render(main, params, { navigate }); } catch (x) { toast(errorText(x), "error"); }
  }
  async function newCamera() {
    const r = await dialog("New camera", cameraForm({}, groups), { ok: "Create", onOk: (f) => api("POST", "/v1/cameras", { json: cameraBody(formValues(f), {}) }) });
    if (r) { invalidate("/v1/cameras"); navigate(`/cameras/${r.id}`); }
  }
  clear(main, h("h1", {}, "Cameras"),
    h("div", { class: "toolbar" }, h("span", { class: "spacer" }), can.admin() ? h("button", { class: "primary", "data-testid": "new-camera", onclick: newCamera, disabled: !groups.length }, "New camera") : null),
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Status", "Group", "URL", "Statistics", "Last error"].map((t) => h("th", {}, t)))), camRows),
    h("h2", {}, "Camera groups"),
    can.admin() ? h("div", { class: "toolbar" }, h("button", { "data-testid": "new-group", onclick: () => editGroup({}) }, "New camera group")) : null,
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Active", "Cameras", "Labels", "Hidden from", ""].map((t) => h("th", {}, t)))), groupRows));
  await load();
  return () => clearTimeout(timer);
}

function statText(s) {
  if (!s || !Object.keys(s).length) return h("span", { class: "dim" }, "–");
  const parts = [];
  if (s.fps != null) parts.push(`${Number(s.fps).toFixed(1)} fps`);
  for (const k of ["frames", "faces", "events", "errors"]) if (s[k] != null) parts.push(`${s[k]} ${k}`);
  return parts.join(" · ") || h("span", { class: "mono" }, JSON.stringify(s).slice(0, 80));
}

function cameraForm(c, groups) {
  const ss = c.stream_settings || {};
  return h("div", { class: "form" },
    field("Name", h("input", { name: "name", required: true, maxlength: 200, value: c.name || "" })),
    field("Group", h("select", { name: "camera_group_id" }, groups.map((g) => h("option", { value: g.id, selected: g.id === c.camera_group_id }, g.name)))),
    field("Stream URL (rtsp://, http(s)://, file://…)", h("input", { name: "url", value: c.url || "", maxlength: 4000 }), "wide"),
    field("Threshold (empty: the group's or the default)", h("input", { type: "number", name: "threshold", min: 0, max: 1, step: 0.01, value: c.threshold ?? "" })),
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "active", checked: c.active !== false }), "active"),
    SETTINGS.map(([k, label, attrs]) => attrs.type === "checkbox"
      ? h("label", { class: "inline" }, h("input", { type: "checkbox", name: "ss_" + k, checked: ss[k] ?? true }), label)
      : field(label, h("input", { name: "ss_" + k, value: ss[k] ?? "", ...attrs }))),
    field("Comment", h("textarea", { name: "comment" }, c.comment || ""), "wide"));
}

function cameraBody(v, c) {
  const stream = { ...(c.stream_settings || {}) };
  for (const [k] of SETTINGS) { const x = v["ss_" + k]; if (x !== null && x !== "" && x !== undefined) stream[k] = x; }
  return { name: v.name.trim(), camera_group_id: Number(v.camera_group_id), url: v.url.trim(), threshold: v.threshold, active: v.active, comment: v.comment, stream_settings: stream };
}

async function detail(main, id, navigate) {
  let cam = await get(`/v1/cameras/${id}`);
  const groups = await getAll("/v1/camera-groups");
  const statusBox = h("div", { "data-testid": "camera-status" });
  let timer;
  async function refreshStatus() {
    try {
      const s = await get(`/v1/cameras/${id}/status`);
      clear(statusBox, h("dl", { class: "kv" },
        h("dt", {}, "Status"), h("dd", {}, statusTag(s.status)),
        h("dt", {}, "Last error"), h("dd", { class: "error" }, s.status_error || h("span", { class: "dim" }, "none")),
        h("dt", {}, "Statistics"), h("dd", {}, statText(s.stats)),
        s.job ? [h("dt", {}, "Job"), h("dd", {}, `${s.job.state}, attempt ${s.job.attempts}`, s.job.lease_node ? `, node ${s.job.lease_node.slice(0, 12)}` : ""),
          s.job.backoff_until ? [h("dt", {}, "Back-off until"), h("dd", {}, fmtTime(s.job.backoff_until))] : null,
          s.job.last_error ? [h("dt", {}, "Job error"), h("dd", { class: "error" }, s.job.last_error)] : null] : null));
    } catch (x) { clear(statusBox, h("span", { class: "dim" }, errorText(x))); }
    timer = setTimeout(refreshStatus, 3000);
  }

  // ROI / ROT drawing on the snapshot
  const regions = { roi: cam.stream_settings.roi || null, rot: cam.stream_settings.rot || null };
  let drawing = null;
  const mode = h("select", { "aria-label": "Region to draw", "data-testid": "region-mode" }, h("option", { value: "roi" }, "ROI: post faces whose centre is inside"), h("option", { value: "rot" }, "ROT: detect only inside"));
  const regionText = h("span", { class: "mono", "data-testid": "region-text" });
  const showRegions = () => regionText.textContent = `ROI ${regions.roi ? regions.roi.map(Math.round).join(",") : "none"} · ROT ${regions.rot ? regions.rot.map(Math.round).join(",") : "none"}`;
  const extra = () => [["roi", "ROI"], ["rot", "ROT"]].filter(([k]) => regions[k]).map(([k, label]) => ({ bbox: regions[k], kind: k, label }))
    .concat(drawing ? [{ bbox: drawing.box, kind: mode.value, label: mode.value.toUpperCase() }] : []);
  const live = liveView(id, { extraBoxes: extra });
  const surface = live.view;
  surface.classList.add("draw");
  surface.dataset.testid = "snapshot";
  const toImage = (ev) => {
    const r = surface.img.getBoundingClientRect();
    const sx = surface.img.naturalWidth / r.width, sy = surface.img.naturalHeight / r.height;
    return [Math.max(0, Math.min(surface.img.naturalWidth, (ev.clientX - r.left) * sx)), Math.max(0, Math.min(surface.img.naturalHeight, (ev.clientY - r.top) * sy))];
  };
  surface.addEventListener("pointerdown", (ev) => {
    if (!surface.img.naturalWidth || !can.admin()) return;
    ev.preventDefault();
    surface.setPointerCapture(ev.pointerId);
    const [x, y] = toImage(ev);
    drawing = { x, y, box: [x, y, x + 1, y + 1] };
  });
  surface.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    const [x, y] = toImage(ev);
    drawing.box = [Math.min(x, drawing.x), Math.min(y, drawing.y), Math.max(x, drawing.x), Math.max(y, drawing.y)];
    live.redraw();
  });
  surface.addEventListener("pointerup", () => {
    if (!drawing) return;
    const [x1, y1, x2, y2] = drawing.box;
    if (x2 - x1 > 4 && y2 - y1 > 4) regions[mode.value] = drawing.box.map((v) => Math.round(v));
    drawing = null; live.redraw(); showRegions();
  });
  surface.img.addEventListener("dragstart", (ev) => ev.preventDefault());
  async function saveRegions() {
    try {
      cam = await api("PATCH", `/v1/cameras/${id}`, { json: { stream_settings: { ...cam.stream_settings, roi: regions.roi, rot: regions.rot } } });
      regions.roi = cam.stream_settings.roi || null; regions.rot = cam.stream_settings.rot || null; showRegions(); live.redraw();
      toast("Regions saved; the running job applies them within a heartbeat.", "ok");
    } catch (x) { toast(errorText(x), "error"); }
  }
  showRegions();

  const edit = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    try { cam = await api("PATCH", `/v1/cameras/${id}`, { json: cameraBody(formValues(edit), cam) }); invalidate("/v1/cameras"); toast("Saved.", "ok"); } catch (x) { toast(errorText(x), "error"); }
  } }, cameraForm(cam, groups), can.admin() ? h("div", { class: "toolbar", style: { marginTop: "10px" } }, h("button", { class: "primary", type: "submit" }, "Save"),
    h("button", { type: "button", class: "danger", onclick: async () => {
      if (!await confirmDialog(`Delete the camera “${cam.name}”? Its events stay.`)) return;
      try { await api("DELETE", `/v1/cameras/${id}`); invalidate("/v1/cameras"); navigate("/cameras"); } catch (x) { toast(errorText(x), "error"); }
    } }, "Delete")) : null);
  if (!can.admin()) edit.querySelectorAll("input, select, textarea").forEach((el) => { el.disabled = true; });

  clear(main, h("h1", {}, cam.name, " ", h("a", { class: "button small", href: `/events?camera_id=${id}` }, "Events")),
    h("div", { class: "detail" },
      h("div", {}, live,
        can.admin() ? h("div", { class: "toolbar", style: { marginTop: "8px" } }, field("Draw with the mouse", mode),
          h("button", { "data-testid": "save-regions", class: "primary", onclick: saveRegions }, "Save regions"),
          h("button", { onclick: () => { regions[mode.value] = null; showRegions(); live.redraw(); } }, "Clear this region"), regionText) : regionText),
      h("div", {}, h("div", { class: "panel" }, h("div", { class: "toolbar" }, h("h2", { style: { margin: 0 } }, "Status"), h("span", { class: "spacer" }),
        can.admin() ? h("button", { "data-testid": "restart", onclick: async () => {
          try { await api("POST", `/v1/cameras/${id}/restart`); toast("Restarting.", "ok"); } catch (x) { toast(errorText(x), "error"); }
        } }, "Restart") : null), statusBox),
      h("div", { class: "panel" }, edit))));
  refreshStatus();
  return () => { clearTimeout(timer); live.stop(); };
}
