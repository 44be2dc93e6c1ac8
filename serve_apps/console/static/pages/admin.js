// Administration: users, tokens, webhooks and their deliveries, runtime settings, the audit log, jobs.
import { api, get, getAll } from "../api.js";
import { h, clear, field, dialog, confirmDialog, formValues, toast, errorText, errorBox, fmtTime, emptyRow, statusTag } from "../ui.js";
import { session } from "../state.js";

const TABS = [["users", "Users"], ["tokens", "Tokens"], ["webhooks", "Webhooks"], ["settings", "Settings"], ["audit", "Audit log"], ["jobs", "Jobs"]];

export async function render(main, { tab = "users" }) {
  const body = h("div");
  clear(main, h("h1", {}, "Administration"),
    h("nav", { class: "toolbar", "aria-label": "Administration" }, TABS.map(([k, t]) => h("a", { class: "button", href: `/admin/${k}`, "aria-current": k === tab ? "page" : undefined, style: k === tab ? { borderColor: "var(--accent)" } : undefined }, t))),
    body);
  const pages = { users, tokens, webhooks, settings, audit, jobs };
  return (pages[tab] || users)(body);
}

const table = (heads, rows) => h("table", {}, h("thead", {}, h("tr", {}, heads.map((t) => h("th", {}, t)))), h("tbody", {}, rows.length ? rows : emptyRow(heads.length)));
const roleSelect = (value) => h("select", { name: "role" }, ["viewer", "operator", "admin"].map((r) => h("option", { value: r, selected: r === value }, r)));

async function users(body) {
  const rows = await getAll("/v1/users");
  const reload = () => users(body);
  clear(body, h("div", { class: "toolbar" }, h("span", { class: "spacer" }), h("button", { class: "primary", onclick: async () => {
    const r = await dialog("New user", h("div", { class: "form" },
      field("Username", h("input", { name: "username", required: true, pattern: "[A-Za-z0-9_.@\\-]+" })), field("Role", roleSelect("viewer")),
      field("Password (8 characters or more)", h("input", { name: "password", type: "password", minlength: 8, autocomplete: "new-password" })),
      field("Comment", h("input", { name: "comment" }))), { ok: "Create", onOk: (f) => {
      const v = formValues(f);
      return api("POST", "/v1/users", { json: { username: v.username.trim(), role: v.role, comment: v.comment, ...(v.password ? { password: v.password } : {}) } });
    } });
    if (r) reload();
  } }, "New user")),
  table(["User", "Role", "Active", "Password", "Comment", "Created", ""], rows.map((u) => h("tr", {},
    h("td", {}, u.username), h("td", {}, u.role), h("td", {}, u.active ? "yes" : h("span", { class: "error" }, "no")),
    h("td", {}, u.has_password === undefined ? "?" : u.has_password ? "set" : h("span", { class: "dim" }, "none")),
    h("td", { class: "dim" }, u.comment), h("td", {}, fmtTime(u.created_at)),
    h("td", {}, h("button", { class: "small", onclick: async () => {
      const r = await dialog(`User ${u.username}`, h("div", { class: "form" }, field("Role", roleSelect(u.role)),
        h("label", { class: "inline" }, h("input", { type: "checkbox", name: "active", checked: u.active }), "active (may sign in and use tokens)"),
        field("Comment", h("input", { name: "comment", value: u.comment }))), { onOk: (f) => { const v = formValues(f); return api("PATCH", `/v1/users/${u.id}`, { json: { role: v.role, active: v.active, comment: v.comment } }); } });
      if (r) reload();
    } }, "Edit"), " ",
    h("button", { class: "small", onclick: async () => {
      const r = await dialog(`New password for ${u.username}`, field("Password (8 characters or more)", h("input", { name: "password", type: "password", minlength: 8, required: true, autocomplete: "new-password" })),
        { ok: "Set password", onOk: (f) => api("PUT", `/v1/users/${u.id}/password`, { json: { password: formValues(f).password } }).then(() => true) });
      if (r) toast("Password set.", "ok");
    } }, "Reset password"), " ",
    u.id !== session.user.id ? h("button", { class: "small danger", onclick: async () => {
      if (!await confirmDialog(`Delete the user ${u.username}?`)) return;
      try { await api("DELETE", `/v1/users/${u.id}`); reload(); } catch (x) { toast(errorText(x), "error"); }
    } }, "Delete") : null)))));
}

export function tokenForm(users) {
  return h("div", { class: "form" }, field("Name", h("input", { name: "name", maxlength: 200 })),
    users ? field("For user", h("select", { name: "user_id" }, users.map((u) => h("option", { value: u.id, selected: u.id === session.user.id }, u.username)))) : null,
    field("Expires in (days, empty: never)", h("input", { type: "number", name: "days", min: 1, max: 3650 })));
}

export async function createToken(users) {
  const created = await dialog("New API token", tokenForm(users), { ok: "Create", onOk: (f) => {
    const v = formValues(f);
    return api("POST", "/v1/tokens", { json: { name: v.name, ...(v.user_id ? { user_id: Number(v.user_id) } : {}), ...(v.days ? { expires_in_s: v.days * 86400 } : {}) } });
  } });
  if (created) await dialog("Token created", h("div", {}, h("p", {}, "Copy it now: it is shown only once."), h("input", { class: "mono", readonly: true, value: created.token, style: { width: "100%" }, onfocus: (e) => e.target.select() }),
    h("p", { class: "dim" }, `Use it as “Authorization: Token …”. Token id ${created.id} (prefix ${created.prefix}).`)));
  return created;
}

/** The tokens the caller may see (admins: everyone's; others: their own), newest first, with revoke. */
export async function tokenList(body, users) {
  const rows = (await getAll("/v1/tokens")).reverse();
  const reload = () => tokenList(body, users);
  const expired = (t) => t.expires_at && new Date(t.expires_at) <= new Date();
  clear(body, h("div", { class: "toolbar" }, h("span", { class: "spacer" }),
    h("button", { class: "primary", "data-testid": "new-token", onclick: async () => { if (await createToken(users)) reload(); } }, users ? "New token" : "New token for me")),
  table(["Name", "Token", "Owner", "Created", "Last used", "Expires", ""], rows.map((t) => h("tr", { "data-token-id": t.id },
    h("td", {}, t.name || h("span", { class: "dim" }, "unnamed")), h("td", { class: "mono" }, `${t.prefix}…`), h("td", {}, t.username),
    h("td", {}, fmtTime(t.created_at)), h("td", {}, t.last_used_at ? fmtTime(t.last_used_at) : h("span", { class: "dim" }, "never")),
    h("td", { class: expired(t) ? "error" : "" }, t.expires_at ? fmtTime(t.expires_at) : h("span", { class: "dim" }, "never")),
    h("td", {}, h("button", { class: "small danger", "data-testid": "revoke-token", onclick: async () => {
      if (!await confirmDialog(`Revoke the token ${t.prefix}… of ${t.username}? Whatever uses it is refused from now on.`, "Revoke")) return;
      try { await api("DELETE", `/v1/tokens/${t.id}`); toast("Token revoked.", "ok"); reload(); } catch (x) { toast(errorText(x), "error"); }
    } }, "Revoke"))))));
}

async function tokens(body) {
  const list = h("div", { "data-testid": "tokens" });
  clear(body, h("p", { class: "dim" }, "Tokens authenticate scripts and integrations (the console signs in with a password). Only their first characters are kept readable: a token is shown once, when it is created."), list);
  await tokenList(list, await getAll("/v1/users"));
}

async function webhooks(body) {
  const rows = await getAll("/v1/webhooks");
  const detail = h("div");
  const edit = async (w) => {
    const r = await dialog(w.id ? `Webhook “${w.title}”` : "New webhook", h("div", { class: "form" },
      field("Title", h("input", { name: "title", required: true, value: w.title || "" })), field("URL", h("input", { name: "url", type: "url", required: true, value: w.url || "" }), "wide"),
      field("Batch size", h("input", { type: "number", name: "batch_size", min: 1, max: 1000, value: w.batch_size || 1 })),
      field("Max attempts", h("input", { type: "number", name: "max_attempts", min: 1, max: 1000, value: w.max_attempts || 10 })),
      field(w.has_secret ? "Secret (set; empty keeps it)" : "Secret (HMAC signature)", h("input", { name: "secret", type: "password", autocomplete: "off" })),
      h("label", { class: "inline" }, h("input", { type: "checkbox", name: "active", checked: w.active !== false }), "active"),
      field("Filters (JSON: camera_group_in, camera_in, watch_list_in, dossier_in, matched, confidence_gte)", h("textarea", { name: "filters", class: "mono" }, JSON.stringify(w.filters || {}, null, 1)), "wide")), {
      ok: w.id ? "Save" : "Create", onOk: (f) => {
        const v = formValues(f);
        let filters;
        try { filters = JSON.parse(v.filters || "{}"); } catch { throw new Error("the filters are not valid JSON"); }
        const json = { title: v.title.trim(), url: v.url.trim(), batch_size: v.batch_size, max_attempts: v.max_attempts, active: v.active, filters };
        if (v.secret) json.secret = v.secret;
        return w.id ? api("PATCH", `/v1/webhooks/${w.id}`, { json }) : api("POST", "/v1/webhooks", { json });
      } });
    if (r) webhooks(body);
  };
  const deliveries = async (w) => {
    const page = await get(`/v1/webhooks/${w.id}/deliveries`, { limit: 100 });
    clear(detail, h("h2", {}, `Recent deliveries of “${w.title}”`), table(["Time", "Attempt", "Result", "HTTP", "Events", "Duration", "Error"], page.results.map((d) => h("tr", {},
      h("td", {}, fmtTime(d.created_at)), h("td", {}, d.attempt), h("td", {}, h("span", { class: "status " + (d.ok ? "ok" : "failing") }, d.ok ? "ok" : "failed")),
      h("td", {}, d.status_code ?? "–"), h("td", {}, d.event_ids.length), h("td", {}, `${d.duration_ms.toFixed(0)} ms`), h("td", { class: "error" }, d.error)))));
  };
  clear(body, h("div", { class: "toolbar" }, h("span", { class: "spacer" }), h("button", { class: "primary", onclick: () => edit({}) }, "New webhook")),
    table(["Title", "URL", "Active", "Filters", ""], rows.map((w) => h("tr", {}, h("td", {}, w.title), h("td", { class: "mono" }, w.url), h("td", {}, w.active ? "yes" : "no"),
      h("td", { class: "mono" }, JSON.stringify(w.filters)),
      h("td", {}, h("button", { class: "small", onclick: () => deliveries(w) }, "Deliveries"), " ", h("button", { class: "small", onclick: () => edit(w) }, "Edit"), " ",
        h("button", { class: "small danger", onclick: async () => { if (await confirmDialog(`Delete the webhook “${w.title}”?`)) { await api("DELETE", `/v1/webhooks/${w.id}`).catch((x) => toast(errorText(x), "error")); webhooks(body); } } }, "Delete"))))),
    detail);
}

const SETTING_HELP = {
  default_threshold: ["Default match threshold", 0, 1, 0.01], episode_threshold: ["Episode threshold", 0, 1, 0.01],
  episode_lookback_s: ["Episode look-back (s)", 0, 86400, 1], episode_idle_timeout_s: ["Episode idle timeout (s)", 0, 86400, 1],
  episode_max_duration_s: ["Episode max duration (s)", 0, 604800, 1], retention_days_matched: ["Keep matched events (days)", 1, 36500, 1],
  retention_days_unmatched: ["Keep unmatched events (days)", 1, 36500, 1], min_dossier_photo_quality: ["Min dossier photo quality", 0, 1, 0.01],
};

async function settings(body) {
  const s = await get("/v1/settings");
  const form = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    const v = formValues(form);
    const patch = {};
    for (const k of Object.keys(SETTING_HELP)) if (v[k] !== null && v[k] !== s[k]) patch[k] = v[k];
    if (v.ignore_unmatched !== s.ignore_unmatched) patch.ignore_unmatched = v.ignore_unmatched;
    try { Object.assign(s, await api("PATCH", "/v1/settings", { json: patch })); toast("Settings saved.", "ok"); } catch (x) { toast(errorText(x), "error"); }
  } }, h("div", { class: "form" },
    Object.entries(SETTING_HELP).map(([k, [label, min, max, step]]) => field(label, h("input", { type: "number", name: k, min, max, step, value: s[k] }))),
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "ignore_unmatched", checked: s.ignore_unmatched }), "ignore unmatched faces (no events for them)"),
    field("Embedder", h("input", { value: s.embedder, disabled: true }))), h("div", { class: "toolbar", style: { marginTop: "10px" } }, h("button", { class: "primary", type: "submit" }, "Save")));
  clear(body, h("div", { class: "panel" }, form));
}

async function audit(body) {
  const out = h("div");
  let cursor = null, params = {};
  const more = h("button", { class: "hidden", onclick: () => load(false) }, "More");
  const rows = h("tbody");
  async function load(reset) {
    if (reset) { cursor = null; clear(rows); }
    try {
      const page = await get("/v1/audit", { ...params, limit: 100, cursor });
      page.results.forEach((a) => rows.append(h("tr", {}, h("td", {}, fmtTime(a.created_at)), h("td", {}, a.username || h("span", { class: "dim" }, "anonymous")),
        h("td", {}, a.method), h("td", { class: "mono" }, a.path), h("td", { class: a.status >= 400 ? "error" : "" }, a.status), h("td", { class: "mono dim" }, a.request_id))));
      if (!rows.childElementCount) rows.append(emptyRow(6));
      cursor = page.next_cursor; more.classList.toggle("hidden", !cursor);
    } catch (x) { clear(out, errorBox(x)); }
  }
  const form = h("form", { class: "toolbar", onsubmit: (e) => {
    e.preventDefault();
    const v = formValues(form);
    params = { username: v.username, path_prefix: v.path_prefix, method: v.method, status_gte: v.failed ? 400 : "" };
    load(true);
  } }, field("User", h("input", { name: "username" })), field("Path starts with", h("input", { name: "path_prefix", placeholder: "/v1/dossiers" })),
  field("Method", h("select", { name: "method" }, ["", "POST", "PUT", "PATCH", "DELETE"].map((m) => h("option", { value: m }, m || "any")))),
  h("label", { class: "inline" }, h("input", { type: "checkbox", name: "failed" }), "failed calls only"), h("button", { type: "submit" }, "Filter"));
  clear(body, form, out, h("table", {}, h("thead", {}, h("tr", {}, ["Time", "User", "Method", "Path", "Status", "Request id"].map((t) => h("th", {}, t)))), rows), more);
  await load(true);
}

async function jobs(body) {
  let page;
  try { page = await get("/v1/jobs", { limit: 200 }); } catch (x) { clear(body, errorBox(x)); return; }
  clear(body, table(["Job", "Kind", "Of", "State", "Node", "Attempts", "Failures", "Back-off until", "Last error", "Updated"], page.results.map((j) => h("tr", {},
    h("td", {}, `#${j.id}`), h("td", {}, j.kind), h("td", {}, j.camera_id ? h("a", { href: `/cameras/${j.camera_id}` }, `camera ${j.camera_id}`) : j.video_id ? h("a", { href: `/videos/${j.video_id}` }, `video ${j.video_id}`) : "–"),
    h("td", {}, statusTag(j.state)), h("td", { class: "mono" }, (j.lease_node || "–").slice(0, 12)), h("td", {}, j.attempts), h("td", {}, j.consecutive_failures),
    h("td", {}, j.backoff_until ? fmtTime(j.backoff_until) : "–"), h("td", { class: "error" }, j.last_error), h("td", {}, fmtTime(j.updated_at))))));
}
