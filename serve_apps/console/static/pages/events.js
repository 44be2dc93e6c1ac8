// Live events: the page of /v1/events with its filters, then new events from the live feed prepended
// without a reload; pause/resume, counters, acknowledge one or every visible event.
import { api, get } from "../api.js";
import { h, clear, field, toast, errorText, errorBox } from "../ui.js";
import { can, lookup } from "../state.js";
import { openStream, alerts } from "../live.js";
import { eventRow, feedContext, markAcked } from "../feed.js";

const MAX_ROWS = 1000;   // the oldest rows go beyond this (the history stays in the API)
const FILTERS = ["camera_id", "camera_group_id", "watch_list_id", "matched", "acknowledged", "timestamp_gte",
  "timestamp_lte", "confidence_gte", "age_gte", "age_lte", "gender", "dossier_id", "episode_id", "video_id"];

function readFilters() {
  const q = new URLSearchParams(location.search);
  return Object.fromEntries(FILTERS.filter((k) => q.get(k)).map((k) => [k, q.get(k)]));
}

function toIso(local) { return local ? new Date(local).toISOString() : ""; }
function toLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso); if (isNaN(d)) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function select(name, options, value) {
  return h("select", { name }, options.map(([v, t]) => h("option", { value: v, selected: String(value ?? "") === String(v) }, t)));
}

export async function render(main, _params, { navigate }) {
  const filters = readFilters();
  const [ctx, groups] = await Promise.all([feedContext(), lookup("/v1/camera-groups")]);
  const state = { paused: false, buffer: [], shown: new Map(), total: 0, matched: 0, cursor: null };

  const form = h("form", { class: "toolbar", "aria-label": "Filters", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const el of form.querySelectorAll("[name]")) {
      let v = el.value;
      if (el.type === "datetime-local") v = toIso(v);
      if (v) q.set(el.name, v);
    }
    navigate("/events" + (q.toString() ? "?" + q : ""));
  } },
  field("Camera", select("camera_id", [["", "any"], ...[...ctx.cameras.values()].map((c) => [c.id, c.name])], filters.camera_id)),
  field("Group", select("camera_group_id", [["", "any"], ...[...groups.values()].map((g) => [g.id, g.name])], filters.camera_group_id)),
  field("Watch list", select("watch_list_id", [["", "any"], ...[...ctx.lists.values()].map((w) => [w.id, w.name])], filters.watch_list_id)),
  field("Matched", select("matched", [["", "any"], ["true", "matched"], ["false", "unmatched"]], filters.matched)),
  field("Acknowledged", select("acknowledged", [["", "any"], ["false", "no"], ["true", "yes"]], filters.acknowledged)),
  field("From", h("input", { type: "datetime-local", name: "timestamp_gte", value: toLocal(filters.timestamp_gte) })),
  field("To", h("input", { type: "datetime-local", name: "timestamp_lte", value: toLocal(filters.timestamp_lte) })),
  field("Confidence ≥", h("input", { type: "number", name: "confidence_gte", min: 0, max: 1, step: 0.01, value: filters.confidence_gte || "", style: { width: "80px" } })),
  field("Age", h("span", { class: "checks" },
    h("input", { type: "number", name: "age_gte", min: 0, max: 150, placeholder: "from", value: filters.age_gte || "", style: { width: "64px" } }),
    h("input", { type: "number", name: "age_lte", min: 0, max: 150, placeholder: "to", value: filters.age_lte || "", style: { width: "64px" } }))),
  field("Gender", select("gender", [["", "any"], ["female", "female"], ["male", "male"]], filters.gender)),
  ...["dossier_id", "episode_id", "video_id"].filter((k) => filters[k]).map((k) => h("input", { type: "hidden", name: k, value: filters[k] })),
  h("button", { type: "submit", class: "primary" }, "Apply"),
  h("button", { type: "button", onclick: () => navigate("/events") }, "Clear"));

  const live = h("span", { class: "pill", "data-testid": "live-state" }, "connecting");
  const counters = h("div", { class: "counters" },
    h("span", { class: "counter" }, h("b", { "data-testid": "count-matched" }, "0"), "matched"),
    h("span", { class: "counter" }, h("b", { "data-testid": "count-total" }, "0"), "total"),
    h("span", { class: "counter" }, h("b", { "data-testid": "count-unack" }, String(alerts.unack.size)), "to acknowledge"),
    live);
  const pause = h("button", { "aria-pressed": "false", "data-testid": "pause", onclick: () => {
    state.paused = !state.paused;
    pause.textContent = state.paused ? `Resume (${state.buffer.length})` : "Pause";
    pause.setAttribute("aria-pressed", String(state.paused));
    if (!state.paused) { const waiting = state.buffer.splice(0); waiting.forEach((e) => prepend(e)); }
  } }, "Pause");
  const ackAll = can.write() ? h("button", { "data-testid": "ack-all", onclick: ackVisible }, "Acknowledge all visible") : null;
  const feed = h("div", { class: "feed", "data-testid": "feed" });
  const more = h("button", { class: "hidden", onclick: () => loadPage() }, "Older events");
  const listError = h("div");
  // On a phone the filters fold away so the feed is on the first screen.
  const folded = h("details", { class: "filters", open: window.innerWidth > 760 || Object.keys(filters).length > 0 },
    h("summary", {}, "Filters", Object.keys(filters).length ? ` (${Object.keys(filters).length})` : ""), form);
  clear(main, h("h1", {}, "Live events ", h("span", { class: "dim", style: { fontSize: "12px", fontWeight: 400 } }, "keys: j/k move · Enter open · a acknowledge · p pause")), folded, h("div", { class: "toolbar" }, counters, h("span", { class: "spacer" }), pause, ackAll),
    listError, feed, h("p", {}, more));

  const unackListener = (a) => { counters.querySelector('[data-testid="count-unack"]').textContent = a.unack.size + (a.capped ? "+" : ""); };
  alerts.listeners.add(unackListener);

  function count(e) {
    state.total += 1; if (e.matched) state.matched += 1;
    counters.querySelector('[data-testid="count-matched"]').textContent = state.matched;
    counters.querySelector('[data-testid="count-total"]').textContent = state.total;
  }

  function prepend(e) {
    if (state.shown.has(e.id)) return;
    const row = eventRow(e, ctx, { fresh: true });
    state.shown.set(e.id, { e, row });
    count(e);
    feed.prepend(row);
    while (feed.childElementCount > MAX_ROWS) {
      const last = feed.lastElementChild; state.shown.delete(last.dataset.id); last.remove();
    }
  }

  async function loadPage() {
    more.disabled = true;
    try {
      const page = await get("/v1/events", { ...filters, limit: 200, cursor: state.cursor });
      const frag = document.createDocumentFragment();
      for (const e of page.results) {
        if (state.shown.has(e.id)) continue;
        const row = eventRow(e, ctx);
        state.shown.set(e.id, { e, row }); count(e); frag.append(row);
      }
      feed.append(frag);
      state.cursor = page.next_cursor;
      more.classList.toggle("hidden", !state.cursor || feed.childElementCount >= MAX_ROWS);
    } catch (x) { clear(listError, errorBox(x)); } finally { more.disabled = false; }
  }

  async function ackVisible() {
    const todo = [...state.shown.values()].filter(({ e }) => !e.acknowledged);
    if (!todo.length) return toast("Nothing to acknowledge.");
    ackAll.disabled = true;
    let done = 0, failed = 0;
    for (let i = 0; i < todo.length; i += 8) {
      await Promise.all(todo.slice(i, i + 8).map(async ({ e, row }) => {
        try { Object.assign(e, await api("POST", `/v1/events/${e.id}/ack`)); markAcked(row); done += 1; } catch (x) { failed += 1; if (failed === 1) toast(errorText(x), "error"); }
      }));
    }
    alerts.ack(todo.map(({ e }) => e.id));
    ackAll.disabled = false;
    toast(`${done} acknowledged` + (failed ? `, ${failed} failed` : ""), failed ? "error" : "ok");
  }

  const since = new Date().toISOString(); // the feed starts where the page was read: nothing falls in between
  await loadPage();
  const stream = openStream({ ...filters, since }, (e) => {
    if (state.paused) { state.buffer.push(e); pause.textContent = `Resume (${state.buffer.length})`; } else prepend(e);
  }, (s) => { live.textContent = s; live.className = "pill " + (s === "live" ? "ack" : "unack"); });
  // Keys for a shift at the screen: j/k move between rows, Enter opens, a acknowledges, p pauses.
  const keys = (ev) => {
    if (ev.target.closest("input, select, textarea, dialog") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const rows = [...feed.children];
    const at = rows.indexOf(document.activeElement && document.activeElement.closest(".ev"));
    const focusRow = (i) => { const r = rows[Math.max(0, Math.min(rows.length - 1, i))]; if (r) { r.tabIndex = -1; r.focus(); r.scrollIntoView({ block: "nearest" }); } };
    if (ev.key === "j") focusRow(at + 1);
    else if (ev.key === "k") focusRow(at < 0 ? 0 : at - 1);
    else if (ev.key === "p") pause.click();
    else if (ev.key === "a" && at >= 0) { const b = rows[at].querySelector('[data-action="ack"]'); if (b) b.click(); }
    else if (ev.key === "Enter" && at >= 0 && document.activeElement === rows[at]) navigate(`/events/${rows[at].dataset.id}`);
    else return;
    ev.preventDefault();
  };
  document.addEventListener("keydown", keys);
  return () => { stream.close(); alerts.listeners.delete(unackListener); document.removeEventListener("keydown", keys); };
}
