// Episodes: list with filters, detail with the episode's events, acknowledge.
import { api, get } from "../api.js";
import { h, clear, fmtTime, toast, errorText, emptyRow, field } from "../ui.js";
import { can, dossier, lookup } from "../state.js";
import { eventRow, feedContext } from "../feed.js";

export async function render(main, params, { navigate }) {
  const ctx = await feedContext();
  if (params.id) return detail(main, Number(params.id), ctx);
  const q = new URLSearchParams(location.search);
  const rows = h("tbody");
  let cursor = null;
  const more = h("button", { class: "hidden", onclick: () => load() }, "More");
  const sel = (name, opts) => h("select", { name }, opts.map(([v, t]) => h("option", { value: v, selected: (q.get(name) || "") === v }, t)));
  const form = h("form", { class: "toolbar", onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    navigate("/episodes" + (p.toString() ? "?" + p : ""));
  } },
  field("Open", sel("open", [["", "any"], ["true", "open"], ["false", "closed"]])),
  field("Matched", sel("matched", [["", "any"], ["true", "matched"], ["false", "unmatched"]])),
  field("Acknowledged", sel("acknowledged", [["", "any"], ["false", "no"], ["true", "yes"]])),
  field("Watch list", sel("watch_list_id", [["", "any"], ...[...ctx.lists.values()].map((w) => [String(w.id), w.name])])),
  h("button", { type: "submit" }, "Apply"));
  async function load() {
    const page = await get("/v1/episodes", { ...Object.fromEntries(q), limit: 100, cursor });
    for (const ep of page.results) rows.append(episodeRow(ep, ctx, navigate));
    if (!rows.childElementCount) rows.append(emptyRow(8, "No episode."));
    cursor = page.next_cursor; more.classList.toggle("hidden", !cursor);
  }
  clear(main, h("h1", {}, "Episodes"), form,
    h("table", {}, h("thead", {}, h("tr", {}, ["", "Who", "Watch list", "Camera", "Events", "Started", "Last", "State"].map((t) => h("th", {}, t)))), rows), more);
  await load();
}

function episodeRow(ep, ctx, navigate) {
  const who = h("td", {}, ep.matched ? "…" : h("span", { class: "dim" }, "unmatched"));
  if (ep.matched) dossier(ep.dossier_id).then((d) => { who.textContent = d ? d.name : `dossier ${ep.dossier_id}`; });
  const list = ctx.lists.get(ep.watch_list_id), cam = ctx.cameras.get(ep.camera_id);
  return h("tr", { class: "clickable", onclick: () => navigate(`/episodes/${ep.id}`) },
    h("td", {}, h("a", { href: `/episodes/${ep.id}` }, `#${ep.id}`)), who,
    h("td", {}, list ? [h("span", { class: "swatch", style: { background: list.color } }), list.name] : "–"),
    h("td", {}, cam ? cam.name : ep.camera_id ?? "–"), h("td", {}, ep.event_count),
    h("td", {}, fmtTime(ep.started_at)), h("td", {}, fmtTime(ep.last_at)),
    h("td", {}, h("span", { class: "pill" }, ep.open ? "open" : "closed"), " ",
      h("span", { class: "pill " + (ep.acknowledged ? "ack" : "unack") }, ep.acknowledged ? "acknowledged" : "not acknowledged")));
}

async function detail(main, id, ctx) {
  const ep = await get(`/v1/episodes/${id}`);
  const d = ep.matched ? await dossier(ep.dossier_id) : null;
  const feed = h("div", { class: "feed" });
  const state = h("span", { class: "pill " + (ep.acknowledged ? "ack" : "unack") }, ep.acknowledged ? `acknowledged by ${ep.acknowledged_by}` : "not acknowledged");
  const ack = can.write() && !ep.acknowledged ? h("button", { class: "primary", onclick: async () => {
    try { const r = await api("POST", `/v1/episodes/${id}/ack`); state.className = "pill ack"; state.textContent = `acknowledged by ${r.acknowledged_by}`; ack.remove(); } catch (x) { toast(errorText(x), "error"); }
  } }, "Acknowledge the episode") : null;
  const page = await get("/v1/events", { episode_id: id, limit: 500 });
  page.results.forEach((e) => feed.append(eventRow(e, ctx)));
  const list = ctx.lists.get(ep.watch_list_id);
  clear(main, h("h1", {}, `Episode #${id}`, d ? ` — ${d.name}` : ""),
    h("div", { class: "toolbar" }, h("span", { class: "pill" }, ep.open ? "open" : "closed"), state, ack,
      list ? h("span", {}, h("span", { class: "swatch", style: { background: list.color } }), list.name) : null,
      h("span", { class: "dim" }, `${ep.event_count} events, ${fmtTime(ep.started_at)} – ${fmtTime(ep.last_at)}`),
      ep.best_event_id ? h("a", { class: "button", href: `/events/${ep.best_event_id}` }, "Best shot") : null),
    feed, page.next_cursor ? h("p", {}, h("a", { href: `/events?episode_id=${id}` }, "All events of this episode")) : null);
}

export { lookup };
