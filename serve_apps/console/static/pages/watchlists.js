// Watch lists: create, edit, delete (the built-in Unmatched list can only be deactivated).
import { api, getAll } from "../api.js";
import { h, clear, field, dialog, confirmDialog, formValues, checkGroup, toast, errorText, pct, emptyRow } from "../ui.js";
import { can, lookup, invalidate } from "../state.js";

function listForm(w, groups) {
  const roles = [{ id: "operator", name: "operator" }, { id: "viewer", name: "viewer" }];
  const hidden = new Set(w.hidden_from_roles || []);
  return h("div", { class: "form" },
    field("Name", h("input", { name: "name", required: true, maxlength: 200, value: w.name || "", disabled: !!w.builtin })),
    field("Colour", h("input", { type: "color", name: "color", value: w.color || "#ff0000" })),
    field("Threshold (empty: default)", h("input", { type: "number", name: "threshold", min: 0, max: 1, step: 0.01, value: w.threshold ?? "" })),
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "active", checked: w.active !== false }), "active"),
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "require_ack", checked: !!w.require_ack }), "matches need acknowledgement (sound, notification)"),
    field("Comment", h("textarea", { name: "comment" }, w.comment || ""), "wide"),
    groups.length ? h("div", { class: "wide" }, h("h2", {}, "Camera groups (none: all)"), checkGroup("camera_group_ids", groups, w.camera_group_ids)) : null,
    can.admin() ? h("div", { class: "wide" }, h("h2", {}, "Hidden from roles"), h("div", { class: "checks" }, roles.map((r) =>
      h("label", { class: "inline" }, h("input", { type: "checkbox", name: "hide_" + r.id, checked: hidden.has(r.id) }), r.name)))) : null);
}

function body(v, w) {
  const out = { color: v.color, active: v.active, require_ack: v.require_ack, threshold: v.threshold, comment: v.comment };
  if (!w.builtin) out.name = v.name.trim();
  if (v.camera_group_ids) out.camera_group_ids = v.camera_group_ids;
  if (can.admin()) out.hidden_from_roles = ["operator", "viewer"].filter((r) => v["hide_" + r]);
  return out;
}

export async function render(main) {
  const groups = can.write() ? await getAll("/v1/camera-groups").catch(() => []) : [];
  const rows = h("tbody");
  async function load() {
    invalidate("/v1/watch-lists");
    const lists = [...(await lookup("/v1/watch-lists")).values()];
    clear(rows, lists.length ? lists.map((w) => h("tr", {},
      h("td", {}, h("span", { class: "swatch", style: { background: w.color } }), w.name, w.builtin ? h("span", { class: "dim" }, " (built-in)") : ""),
      h("td", {}, w.active ? "yes" : "no"), h("td", {}, w.require_ack ? "yes" : "–"),
      h("td", {}, w.threshold == null ? h("span", { class: "dim" }, "default") : pct(w.threshold)),
      h("td", {}, w.camera_group_ids.length ? w.camera_group_ids.map((id) => (groups.find((g) => g.id === id) || { name: id }).name).join(", ") : h("span", { class: "dim" }, "all")),
      h("td", {}, w.hidden_from_roles.join(", ")),
      h("td", {}, h("a", { href: `/dossiers?watch_list_id=${w.id}` }, "dossiers"), " ", h("a", { href: `/events?watch_list_id=${w.id}` }, "events")),
      h("td", {}, can.write() ? [h("button", { class: "small", onclick: () => edit(w) }, "Edit"), " ",
        w.builtin ? null : h("button", { class: "small danger", onclick: () => remove(w) }, "Delete")] : null))) : emptyRow(8));
  }
  async function edit(w) {
    const r = await dialog(w.id ? `Watch list “${w.name}”` : "New watch list", listForm(w, groups), {
      ok: w.id ? "Save" : "Create",
      onOk: (f) => w.id ? api("PATCH", `/v1/watch-lists/${w.id}`, { json: body(formValues(f), w) }) : api("POST", "/v1/watch-lists", { json: body(formValues(f), w) }),
    });
    if (r) { toast("Saved.", "ok"); load(); }
  }
  async function remove(w) {
    if (!await confirmDialog(`Delete the watch list “${w.name}”? Its dossiers stay.`)) return;
    try { await api("DELETE", `/v1/watch-lists/${w.id}`); load(); } catch (x) { toast(errorText(x), "error"); }
  }
  clear(main, h("h1", {}, "Watch lists"),
    h("div", { class: "toolbar" }, h("span", { class: "spacer" }), can.write() ? h("button", { class: "primary", "data-testid": "new-list", onclick: () => edit({}) }, "New watch list") : null),
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Active", "Needs ack", "Threshold", "Camera groups", "Hidden from", "", ""].map((t) => h("th", {}, t)))), rows));
  await load();
}
