// Search by photo (drag-and-drop, or an event's / a dossier photo's face) over events or dossiers, and
// verify two photos side by side.
import { api } from "../api.js";
import { h, clear, field, dropZone, pct, fmtTime, errorBox } from "../ui.js";
import { lookup } from "../state.js";

export async function render(main, _params, ctx) {
  if (ctx.pattern === "/verify") return verify(main);
  const q = new URLSearchParams(location.search);
  const [cameras, groups, lists] = await Promise.all([lookup("/v1/cameras"), lookup("/v1/camera-groups"), lookup("/v1/watch-lists")]);
  const state = { file: null, event_id: q.get("event_id"), dossier_face_id: q.get("dossier_face_id") };
  const preview = h("div");
  const showProbe = () => {
    if (state.file) clear(preview, h("img", { src: URL.createObjectURL(state.file), alt: "probe" }), h("div", { class: "small" }, state.file.name));
    else if (state.event_id) clear(preview, h("span", {}, "The face of event ", h("a", { href: `/events/${state.event_id}`, class: "mono" }, state.event_id)));
    else if (state.dossier_face_id) clear(preview, h("span", {}, `Dossier photo #${state.dossier_face_id}`));
    else clear(preview);
  };
  const zone = dropZone("Drop a photo here, or choose one", (files) => {
    state.file = files[0]; state.event_id = null; state.dossier_face_id = null; showProbe(); run();
  });
  zone.append(preview);
  const opt = (name, items, label = (x) => x.name) => h("select", { name }, h("option", { value: "" }, "any"), [...items.values()].map((x) => h("option", { value: x.id }, label(x))));
  const form = h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); run(); } },
    field("Search in", h("select", { name: "target" }, h("option", { value: "events", selected: q.get("target") !== "dossiers" }, "events"), h("option", { value: "dossiers", selected: q.get("target") === "dossiers" }, "dossiers"))),
    field("Threshold", h("select", { name: "threshold" }, ["", "strict", "medium", "low", "none"].map((v) => h("option", { value: v }, v || "default")))),
    field("or a value", h("input", { type: "number", name: "threshold_value", min: 0, max: 1, step: 0.01, style: { width: "80px" } })),
    field("Camera", opt("camera_id", cameras)), field("Group", opt("camera_group_id", groups)),
    field("Watch list", opt("watch_list_id", new Map([...lists].filter(([, w]) => !w.builtin)))),
    field("From", h("input", { type: "datetime-local", name: "timestamp_gte" })), field("To", h("input", { type: "datetime-local", name: "timestamp_lte" })),
    field("Sort", h("select", { name: "sort" }, h("option", { value: "confidence" }, "confidence"), h("option", { value: "time" }, "time"))),
    field("Limit", h("input", { type: "number", name: "limit", min: 1, max: 1000, value: 50, style: { width: "70px" } })),
    h("button", { class: "primary", type: "submit", "data-testid": "run-search" }, "Search"));
  const results = h("div", { "data-testid": "search-results" });

  async function run() {
    if (!state.file && !state.event_id && !state.dossier_face_id) { clear(results, h("p", { class: "dim" }, "Give a photo first.")); return; }
    const v = Object.fromEntries(new FormData(form));
    const body = new FormData();
    if (state.file) body.append("photo", state.file, state.file.name);
    if (state.event_id) body.append("event_id", state.event_id);
    if (state.dossier_face_id) body.append("dossier_face_id", state.dossier_face_id);
    const target = v.target;
    body.append("target", target);
    body.append("sort", v.sort); body.append("limit", v.limit || "50");
    const threshold = v.threshold_value !== "" ? v.threshold_value : v.threshold;
    if (threshold) body.append("threshold", threshold);
    for (const k of ["camera_id", "camera_group_id"]) if (v[k] && target === "events") body.append(k, v[k]);
    if (v.watch_list_id && target === "dossiers") body.append("watch_list_id", v.watch_list_id);
    for (const k of ["timestamp_gte", "timestamp_lte"]) if (v[k] && target === "events") body.append(k, new Date(v[k]).toISOString());
    clear(results, h("p", { class: "dim" }, "Searching…"));
    try {
      const r = await api("POST", "/v1/search", { form: body });
      const hits = r.results;
      clear(results, h("p", { class: "dim" }, `${hits.length} result${hits.length === 1 ? "" : "s"}`, r.missing_shards ? ` (shards ${r.missing_shards.join(", ")} did not answer)` : ""),
        h("div", { class: "grid" }, hits.map((hit) => hit.event ? eventCard(hit, cameras) : dossierCard(hit))));
    } catch (x) { clear(results, errorBox(x)); }
  }
  clear(main, h("h1", {}, "Search by photo ", h("a", { href: "/verify", class: "button small" }, "Verify two photos")), zone, form, results);
  showProbe();
  if (state.event_id || state.dossier_face_id) run();
}

function eventCard(hit, cameras) {
  const e = hit.event;
  const cam = cameras.get(e.camera_id);
  return h("a", { class: "card", href: `/events/${e.id}`, dataset: { eventId: e.id } },
    h("img", { src: e.media.thumbnail || e.media.crop, alt: "face", loading: "lazy" }),
    h("b", { class: "conf" }, pct(hit.confidence)),
    h("span", { class: "small" }, cam ? cam.name : e.video_id ? `video ${e.video_id}` : ""), h("span", { class: "small" }, fmtTime(e.timestamp)));
}

function dossierCard(hit) {
  const img = h("img", { alt: "dossier photo", loading: "lazy" });
  if (hit.dossier) {
    const url = hit.face_id ? `/v1/dossiers/${hit.dossier.id}/faces/${hit.face_id}` : `/v1/dossiers/${hit.dossier.id}/faces`;
    api("GET", url).then((f) => { const face = f.results ? f.results[0] : f; if (face) img.src = face.crop || face.photo; }).catch(() => {});
  }
  return h("a", { class: "card", href: hit.dossier ? `/dossiers/${hit.dossier.id}` : "#", dataset: { dossierId: hit.dossier && hit.dossier.id } },
    img, h("b", { class: "conf" }, pct(hit.confidence)), h("span", {}, hit.dossier ? hit.dossier.name : "?"));
}

function verify(main) {
  const files = [null, null];
  const out = h("div", { "data-testid": "verify-result" });
  const threshold = h("select", { name: "threshold" }, ["", "strict", "medium", "low"].map((v) => h("option", { value: v }, v || "default")));
  const zones = [0, 1].map((i) => {
    const prev = h("div");
    const z = dropZone(`Photo ${i + 1}`, (f) => { files[i] = f[0]; clear(prev, h("img", { src: URL.createObjectURL(f[0]), alt: `photo ${i + 1}` })); run(); });
    z.append(prev);
    return z;
  });
  async function run() {
    if (!files[0] || !files[1]) return;
    const body = new FormData();
    body.append("photo1", files[0], files[0].name); body.append("photo2", files[1], files[1].name);
    if (threshold.value) body.append("threshold", threshold.value);
    clear(out, h("p", { class: "dim" }, "Comparing…"));
    try {
      const r = await api("POST", "/v1/verify", { form: body });
      clear(out, h("div", { class: "msg " + (r.verified ? "ok" : "error") }, r.verified ? "Same person" : "Different people",
        ` — confidence ${pct(r.confidence)} (threshold ${pct(r.threshold)})`));
    } catch (x) { clear(out, errorBox(x)); }
  }
  clear(main, h("h1", {}, "Verify two photos ", h("a", { href: "/search", class: "button small" }, "Search by photo")),
    h("div", { class: "toolbar" }, field("Threshold", threshold), h("button", { onclick: run }, "Compare")),
    h("div", { class: "detail", style: { gridTemplateColumns: "1fr 1fr" } }, zones), out);
}
