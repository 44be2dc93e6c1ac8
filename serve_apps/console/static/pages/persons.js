// Persons (docs/persons.md): a grid of persons with counts and last seen; a person's history as a
// timeline across cameras; an operator's corrections: merge, "not this person", promote to a dossier.
import { api, get } from "../api.js";
import { h, clear, field, dialog, confirmDialog, formValues, checkGroup, toast, errorText, fmtTime } from "../ui.js";
import { can, lookup } from "../state.js";

const FILTERS = ["anonymous", "regular", "min_events", "min_days", "camera_id", "last_seen_gte"];

export async function render(main, params, { navigate }) {
  if (params.id) return detail(main, Number(params.id), navigate);
  return grid(main, navigate);
}

function personName(p) { return p.dossier_name || `Person #${p.id}`; }

function face(p) {
  const e = p.best_event;
  return e && (e.media.crop || e.media.thumbnail) || "";
}

/** The list: anonymous persons by default, newest last seen first, filters in the URL. */
async function grid(main, navigate) {
  const cameras = await lookup("/v1/cameras");
  const q = new URLSearchParams(location.search);
  if (!q.has("anonymous")) q.set("anonymous", "true");
  const cards = h("div", { class: "grid persons", "data-testid": "persons-grid" });
  let cursor = null;
  const more = h("button", { class: "hidden", onclick: () => load() }, "More");
  const sel = (name, opts) => h("select", { name }, opts.map(([v, t]) => h("option", { value: v, selected: (q.get(name) || "") === v }, t)));
  const num = (name) => h("input", { name, type: "number", min: 0, value: q.get(name) || "", style: { width: "6em" } });
  const form = h("form", { class: "toolbar", onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams([...new FormData(form)].filter(([, v]) => v !== ""));
    if (!p.has("anonymous")) p.set("anonymous", "");
    navigate("/persons?" + p);
  } },
  field("Who", sel("anonymous", [["true", "strangers"], ["false", "dossiers' persons"], ["", "everyone"]])),
  field("Visits", sel("regular", [["", "any"], ["true", "regulars"], ["false", "not regulars"]])),
  field("Events ≥", num("min_events")), field("Days ≥", num("min_days")),
  field("Camera", sel("camera_id", [["", "any"], ...[...cameras.values()].map((c) => [String(c.id), c.name])])),
  h("button", { type: "submit" }, "Apply"));

  async function load() {
    const filters = Object.fromEntries(FILTERS.map((k) => [k, q.get(k)]));
    const page = await get("/v1/persons", { ...filters, limit: 60, cursor });
    for (const p of page.results) cards.append(card(p));
    if (!cards.childElementCount) cards.append(h("p", { class: "dim" }, "No person matches."));
    cursor = page.next_cursor; more.classList.toggle("hidden", !cursor);
  }
  clear(main, h("h1", {}, "Persons"),
    h("p", { class: "dim" }, "Every face seen becomes a person: strangers get a lasting identity across cameras."),
    form, cards, more);
  await load();
}

function card(p) {
  return h("a", { class: "card person", href: `/persons/${p.id}`, dataset: { id: p.id } },
    h("img", { src: face(p), alt: "best face", loading: "lazy" }),
    h("b", {}, personName(p), p.regular ? h("span", { class: "pill regular" }, "regular") : null),
    h("span", { class: "small", "data-testid": "person-counts" },
      `${p.event_count} event${p.event_count === 1 ? "" : "s"} · ${p.days_seen} day${p.days_seen === 1 ? "" : "s"} · ${p.camera_ids.length} camera${p.camera_ids.length === 1 ? "" : "s"}`),
    h("span", { class: "small" }, "last seen ", fmtTime(p.last_seen_at)));
}

/** One person: facts, corrections, and the history as a timeline grouped by day. */
async function detail(main, id, navigate) {
  const [cameras, lists] = await Promise.all([lookup("/v1/cameras"), lookup("/v1/watch-lists")]);
  let person = await get(`/v1/persons/${id}`);
  const facts = h("div", { class: "toolbar", "data-testid": "person-facts" });
  const title = h("h1", {});
  const timeline = h("div", { class: "timeline", "data-testid": "person-timeline" });
  const events = [];
  let cursor = null;
  const more = h("button", { class: "hidden", onclick: () => loadEvents() }, "Older events");

  function drawFacts() {
    clear(title, personName(person), person.regular ? h("span", { class: "pill regular" }, "regular") : null);
    const where = person.camera_ids.map((c) => (cameras.get(c) || { name: `camera ${c}` }).name).join(", ") || "–";
    clear(facts,
      h("span", {}, h("b", { "data-testid": "person-event-count" }, person.event_count), " events"),
      h("span", {}, `${person.days_seen} distinct days`),
      h("span", {}, "first seen ", fmtTime(person.first_seen_at)), h("span", {}, "last seen ", fmtTime(person.last_seen_at)),
      h("span", {}, "cameras: ", where),
      person.dossier_id ? h("a", { href: `/dossiers/${person.dossier_id}` }, "Dossier") : null,
      h("a", { href: `/events?person_id=${id}` }, "As a list of events"));
  }

  const actions = can.write() ? h("div", { class: "toolbar" },
    h("button", { "data-testid": "person-merge", onclick: merge }, "Merge another person into this one"),
    person.dossier_id ? null : h("button", { class: "primary", "data-testid": "person-promote", onclick: promote }, "Promote to a dossier")) : null;

  async function merge() {
    const r = await dialog("Merge persons", h("div", { class: "form" },
      h("p", { class: "dim wide" }, "The other person's events and faces become this person's; the other person goes."),
      field("Other person's id", h("input", { name: "other_id", type: "number", min: 1, required: true }))),
    { ok: "Merge", onOk: (f) => api("POST", `/v1/persons/${id}/merge`, { json: { other_id: Number(formValues(f).other_id) } }) });
    if (!r) return;
    toast("Merged.", "ok");
    if (r.id !== id) return navigate(`/persons/${r.id}`);
    person = r; drawFacts(); resetEvents();
  }

  async function promote() {
    const chosen = events.filter((e) => e.media.crop).slice(0, 5).map((e) => e.id);
    const picks = h("div", { class: "grid" }, events.filter((e) => e.media.crop).slice(0, 20).map((e) =>
      h("label", { class: "card" }, h("img", { src: e.media.crop, alt: "face" }),
        h("span", { class: "inline" }, h("input", { type: "checkbox", name: "event_ids", value: e.id, checked: chosen.includes(e.id) }), fmtTime(e.timestamp)))));
    const r = await dialog("Promote to a dossier", h("div", { class: "form" },
      field("Name", h("input", { name: "name", required: true, maxlength: 300 })),
      field("Comment", h("textarea", { name: "comment" }), "wide"),
      h("div", { class: "wide" }, h("h2", {}, "Watch lists"), checkGroup("watch_list_ids", [...lists.values()].filter((w) => !w.builtin), [])),
      h("div", { class: "wide" }, h("h2", {}, "Faces for the dossier"), picks)),
    { ok: "Promote", onOk: (f) => {
      const v = formValues(f);
      const ids = [...f.querySelectorAll('input[name="event_ids"]:checked')].map((i) => i.value);
      return api("POST", `/v1/persons/${id}/promote`, { json: { name: v.name.trim(), comment: v.comment, watch_list_ids: v.watch_list_ids, event_ids: ids } });
    } });
    if (!r) return;
    toast("The person is a dossier now.", "ok");
    navigate(`/dossiers/${r.dossier_id}`);
  }

  async function notThisPerson(e, item) {
    if (!await confirmDialog("Take this event out of the person? It becomes a person of its own and never joins this one again.", "Not this person")) return;
    try {
      const other = await api("DELETE", `/v1/persons/${id}/events/${encodeURIComponent(e.id)}`);
      item.remove();
      events.splice(events.indexOf(e), 1);
      person = await get(`/v1/persons/${id}`);
      drawFacts();
      toast(`The event is person #${other.id} now.`, "ok");
    } catch (x) { toast(errorText(x), "error"); }
  }

  function entry(e) {
    const camera = cameras.get(e.camera_id);
    const item = h("li", { class: "ev unmatched", dataset: { id: e.id } },
      h("img", { src: e.media.crop || e.media.thumbnail || "", alt: "face", loading: "lazy", width: 64, height: 64 }),
      h("div", { class: "info" }, h("a", { href: `/events/${e.id}` }, new Date(e.timestamp).toLocaleTimeString()),
        h("div", { class: "meta" }, camera ? camera.name : e.video_id ? `video ${e.video_id}` : "–",
          ` · quality ${e.quality.toFixed(2)}`, e.person_status ? ` · ${e.person_status}` : "")),
      h("div", { class: "side" }, can.write() ? h("button", { class: "small", "data-action": "not-this-person",
        onclick: () => notThisPerson(e, item) }, "Not this person") : null));
    return item;
  }

  let day = null, dayList = null;
  async function loadEvents() {
    const page = await get(`/v1/persons/${id}/events`, { limit: 100, cursor });
    for (const e of page.results) {
      events.push(e);
      const d = new Date(e.timestamp).toDateString();
      if (d !== day) {
        day = d; dayList = h("ol", { class: "feed" });
        timeline.append(h("section", { class: "day" }, h("h2", {}, new Date(e.timestamp).toLocaleDateString()), dayList));
      }
      dayList.append(entry(e));
    }
    if (!events.length) timeline.append(h("p", { class: "dim" }, "No event of this person is visible to you."));
    cursor = page.next_cursor; more.classList.toggle("hidden", !cursor);
  }
  function resetEvents() { events.length = 0; cursor = null; day = null; clear(timeline); return loadEvents(); }

  drawFacts();
  clear(main, title, h("p", {}, h("a", { href: "/persons" }, "All persons")), facts, actions,
    h("div", { class: "detail" },
      h("div", {}, h("h2", {}, "History"), timeline, more),
      h("div", { class: "panel" }, h("h2", {}, "Best face"), h("img", { class: "best", src: face(person), alt: "best face" }))));
  await loadEvents();
}
