// Dossiers: list with search, create, edit, delete; photos by file, drag-and-drop or webcam; bulk zip enrolment.
import { api, get, upload } from "../api.js";
import { h, clear, field, dialog, confirmDialog, formValues, checkGroup, toast, errorText, errorBox, dropZone, fmtTime, emptyRow } from "../ui.js";
import { can, lookup, forgetDossier } from "../state.js";
import { enrolPhotos } from "../enrol.js";
import { webcamButton } from "../webcam.js";

export async function render(main, params, ctx) {
  if (ctx.pattern === "/dossiers/bulk") return bulk(main);
  if (params.id) return detail(main, Number(params.id), ctx);
  return list(main, ctx);
}

function dossierForm(d, lists) {
  const choices = [...lists.values()].filter((w) => !w.builtin);
  return h("div", { class: "form" },
    field("Name", h("input", { name: "name", required: true, maxlength: 300, value: d.name || "" })),
    field("External id", h("input", { name: "external_id", maxlength: 200, value: d.external_id || "" })),
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "active", checked: d.active !== false }), "active"),
    field("Comment", h("textarea", { name: "comment" }, d.comment || ""), "wide"),
    h("div", { class: "wide" }, h("h2", {}, "Watch lists"), checkGroup("watch_list_ids", choices, d.watch_list_ids || [])));
}

function body(v) {
  return { name: v.name.trim(), comment: v.comment, external_id: v.external_id.trim() || null, active: v.active, watch_list_ids: v.watch_list_ids };
}

async function list(main, { navigate }) {
  const lists = await lookup("/v1/watch-lists");
  const q = new URLSearchParams(location.search);
  const state = { cursor: null };
  const rows = h("tbody");
  const more = h("button", { class: "hidden", onclick: () => load() }, "More");
  const search = h("form", { class: "toolbar", onsubmit: (e) => {
    e.preventDefault();
    const v = formValues(search); const p = new URLSearchParams();
    if (v.name_contains) p.set("name_contains", v.name_contains);
    if (v.watch_list_id) p.set("watch_list_id", v.watch_list_id);
    navigate("/dossiers" + (p.toString() ? "?" + p : ""));
  } },
  field("Name contains", h("input", { name: "name_contains", value: q.get("name_contains") || "", type: "search" })),
  field("Watch list", h("select", { name: "watch_list_id" }, h("option", { value: "" }, "any"),
    [...lists.values()].map((w) => h("option", { value: w.id, selected: q.get("watch_list_id") === String(w.id) }, w.name)))),
  h("button", { type: "submit" }, "Search"), h("span", { class: "spacer" }),
  can.write() ? h("a", { class: "button", href: "/dossiers/bulk" }, "Bulk enrolment") : null,
  can.write() ? h("button", { class: "primary", type: "button", "data-testid": "new-dossier", onclick: create }, "New dossier") : null);

  async function create() {
    const r = await dialog("New dossier", dossierForm({}, lists), { ok: "Create", onOk: (f) => api("POST", "/v1/dossiers", { json: body(formValues(f)) }) });
    if (r) navigate(`/dossiers/${r.id}`);
  }

  async function load() {
    const page = await get("/v1/dossiers", { name_contains: q.get("name_contains"), watch_list_id: q.get("watch_list_id"), limit: 100, cursor: state.cursor });
    const frag = document.createDocumentFragment();
    for (const d of page.results) {
      const tr = h("tr", { class: "clickable", onclick: () => navigate(`/dossiers/${d.id}`) },
        h("td", {}, h("a", { href: `/dossiers/${d.id}` }, d.name)),
        h("td", {}, d.watch_list_ids.map((id) => lists.get(id)).filter(Boolean).map((w) => h("span", { class: "pill", style: { borderColor: w.color } }, w.name))),
        h("td", {}, d.face_count), h("td", {}, d.active ? "yes" : "no"), h("td", { class: "dim" }, d.external_id || ""), h("td", { class: "dim" }, fmtTime(d.updated_at)));
      frag.append(tr);
    }
    rows.append(frag);
    if (!rows.childElementCount) rows.append(emptyRow(6, "No dossier matches."));
    state.cursor = page.next_cursor;
    more.classList.toggle("hidden", !state.cursor);
  }
  clear(main, h("h1", {}, "Dossiers"), search,
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Watch lists", "Faces", "Active", "External id", "Updated"].map((t) => h("th", {}, t)))), rows), more);
  await load();
}

async function detail(main, id, { navigate }) {
  const lists = await lookup("/v1/watch-lists");
  const d = await get(`/v1/dossiers/${id}`);
  const faces = await get(`/v1/dossiers/${id}/faces`);
  const out = h("div", { "data-testid": "enrol-result" });
  const grid = h("div", { class: "grid", "data-testid": "dossier-faces" });
  const drawFaces = (rows) => clear(grid, rows.length ? rows.map((f) => h("div", { class: "card", dataset: { faceId: f.id } },
    h("img", { src: f.crop || f.photo, alt: "face", loading: "lazy" }),
    h("span", { class: "small" }, `quality ${f.quality.toFixed(2)}`),
    h("div", { class: "checks" },
      h("a", { class: "button small", href: `/search?dossier_face_id=${f.id}&target=events` }, "Search"),
      f.photo ? h("a", { class: "button small", href: f.photo, target: "_blank", rel: "noopener" }, "Photo") : null,
      can.write() ? h("button", { class: "small danger", onclick: async () => {
        if (!await confirmDialog("Remove this photo from the dossier?", "Remove")) return;
        try { await api("DELETE", `/v1/dossiers/${id}/faces/${f.id}`); forgetDossier(id); refresh(); } catch (x) { toast(errorText(x), "error"); }
      } }, "Remove") : null))) : h("p", { class: "dim" }, "No photo yet: a dossier without a face cannot match."));
  // Several photos enrolled in a row each ask for a redraw: only the latest asked is drawn, so that a slow
  // early answer cannot draw fewer faces over a later one.
  let asked = 0;
  const refresh = async () => {
    const n = ++asked;
    const page = await get(`/v1/dossiers/${id}/faces`);
    if (n === asked) drawFaces(page.results);
  };
  drawFaces(faces.results);

  const enrolled = () => { forgetDossier(id); refresh(); };
  const enrolAll = (files) => enrolPhotos(id, files, out, enrolled);
  const add = dropZone("Drop photos here, or choose files", enrolAll, { multiple: true });
  const webcam = webcamButton((file) => enrolAll([file]));

  const edit = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    try { await api("PATCH", `/v1/dossiers/${id}`, { json: body(formValues(edit)) }); forgetDossier(id); toast("Saved.", "ok"); } catch (x) { toast(errorText(x), "error"); }
  } }, dossierForm(d, lists), can.write() ? h("div", { class: "toolbar", style: { marginTop: "10px" } },
    h("button", { class: "primary", type: "submit" }, "Save"),
    h("button", { type: "button", class: "danger", onclick: async () => {
      if (!await confirmDialog(`Delete the dossier “${d.name}” and its photos?`)) return;
      try { await api("DELETE", `/v1/dossiers/${id}`); forgetDossier(id); navigate("/dossiers"); } catch (x) { toast(errorText(x), "error"); }
    } }, "Delete")) : null);
  if (!can.write()) edit.querySelectorAll("input, textarea, select").forEach((el) => { el.disabled = true; });

  clear(main, h("h1", {}, d.name), h("p", {}, h("a", { href: `/events?dossier_id=${id}` }, "Events of this dossier"), " · ", h("a", { href: `/dossiers` }, "All dossiers")),
    h("div", { class: "detail" },
      h("div", {}, h("h2", {}, "Photos"), grid, can.write() ? [h("h2", {}, "Add a photo"), add, webcam ? h("div", { class: "toolbar", style: { marginTop: "8px" } }, webcam) : null, out] : null),
      h("div", { class: "panel" }, edit)));
}

async function bulk(main) {
  const lists = await lookup("/v1/watch-lists");
  const results = h("div", { "data-testid": "bulk-results" });
  const progress = h("progress", { class: "hidden", max: 1, value: 0 });
  const faceSelect = h("select", { name: "face_select" }, ["biggest", "reject", "all"].map((v) => h("option", { value: v }, v)));
  const choices = checkGroup("watch_list_ids", [...lists.values()].filter((w) => !w.builtin), []);
  const zone = dropZone("Drop a zip (one photo per person, or a folder per person) or photos here", async (files) => {
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    form.append("watch_list_ids", [...choices.querySelectorAll("input:checked")].map((i) => i.value).join(","));
    form.append("face_select", faceSelect.value);
    progress.classList.remove("hidden");
    clear(results, h("p", { class: "dim" }, "Uploading…"));
    try {
      const r = await upload("/v1/dossiers/bulk", form, (done, total) => { progress.value = total ? done / total : 0; if (total && done >= total) clear(results, h("p", { class: "dim" }, "Enrolling the faces…")); });
      clear(results, h("p", {}, `${r.enrolled} enrolled, ${r.failed} failed.`),
        h("table", {}, h("thead", {}, h("tr", {}, ["File", "Dossier", "Result", "Reason"].map((t) => h("th", {}, t)))),
          h("tbody", {}, r.results.map((it) => h("tr", {},
            h("td", { class: "mono" }, it.file),
            h("td", {}, it.dossier_id ? h("a", { href: `/dossiers/${it.dossier_id}` }, it.dossier) : it.dossier),
            h("td", {}, h("span", { class: "status " + (it.status === "ok" ? "ok" : "failing") }, it.status)),
            h("td", {}, it.error ? errorText({ code: it.error, message: it.reason || "" }) : ""))))));
    } catch (x) { clear(results, errorBox(x)); } finally { progress.classList.add("hidden"); }
  }, { accept: ".zip,image/*", multiple: true });
  clear(main, h("h1", {}, "Bulk enrolment"), h("p", { class: "dim" }, "Each photo becomes a dossier named after the file (or its folder in the zip)."),
    h("div", { class: "panel" }, h("div", { class: "form" }, field("Several faces in a photo", faceSelect), h("div", { class: "wide" }, h("h2", {}, "Put on watch lists"), choices))),
    zone, progress, results);
}
