// The live feed: EventSource over /v1/events/stream (the session cookie authenticates it). Alerts for
// watch lists with require_ack: a beep made with Web Audio, a desktop notification, the unack counter.
import { get, getAll, query } from "./api.js";
import { lookup } from "./state.js";

/** Opens a stream with the /v1/events filters; onEvent(event). Returns {close()}. Reconnects by itself
 *  (the browser sends Last-Event-ID, so nothing is lost or repeated across a reconnect).
 *
 *  The stream is closed when the page is hidden for a navigation (`pagehide`): a page kept in the
 *  back/forward cache keeps its EventSource connected otherwise, and after a few page loads those
 *  streams hold all six connections the browser allows one host, so the next page waits until the
 *  server ends one (about a minute). Back on the page (`pageshow` from that cache) it reopens after the
 *  last event it had (the SSE id starts with the feed position in µs), skipping that one event. */
export function openStream(filters, onEvent, onState) {
  let source = null, lastId = "", closed = false;
  const position = (id) => Number(String(id).split("~")[0]) || 0;
  const connect = (params) => {
    source = new EventSource("/v1/events/stream" + query(params), { withCredentials: true });
    source.addEventListener("event", (m) => {
      if (m.lastEventId && (m.lastEventId === lastId || position(m.lastEventId) < position(lastId))) return;
      lastId = m.lastEventId || lastId;
      try { onEvent(JSON.parse(m.data)); } catch (e) { console.error(e); }
    });
    source.onopen = () => onState && onState("live");
    source.onerror = () => onState && onState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
  };
  let hiddenAt = null;
  const hide = () => { hiddenAt = new Date(); source.close(); };
  const show = (e) => {
    if (!e.persisted || closed) return;
    const since = lastId ? new Date(Math.floor(position(lastId) / 1000)) : hiddenAt || new Date();
    connect({ ...filters, since: since.toISOString() });
  };
  window.addEventListener("pagehide", hide);
  window.addEventListener("pageshow", show);
  connect(filters);
  return {
    close: () => { closed = true; source.close(); window.removeEventListener("pagehide", hide); window.removeEventListener("pageshow", show); },
    get source() { return source; },
  };
}

let audio;
// Browsers start audio only after a user gesture: the context is made on the first click or key.
function unlockAudio() {
  try { audio = audio || new AudioContext(); if (audio.state === "suspended") audio.resume(); } catch { /* no audio */ }
}
document.addEventListener("pointerdown", unlockAudio, { once: true });
document.addEventListener("keydown", unlockAudio, { once: true });

export function beep() {
  try {
    if (!audio) return;
    const now = audio.currentTime;
    for (const [i, freq] of [[0, 880], [1, 660]]) {
      const osc = audio.createOscillator(), gain = audio.createGain();
      osc.type = "square"; osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.15, now + i * 0.18 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + i * 0.18); osc.stop(now + i * 0.18 + 0.17);
    }
  } catch { /* no audio device: the counter and the notification still tell */ }
}

/** Asked on a click (browsers refuse permission prompts without a user gesture). */
export async function enableNotifications() {
  if (!("Notification" in window)) return "unsupported";
  unlockAudio();
  return Notification.requestPermission();
}

export const alerts = {
  unack: new Set(),   // ids of unacknowledged events on require_ack lists
  capped: false,      // more than we counted
  listeners: new Set(),
  stream: null,
  muted: localStorage.getItem("fw_muted") === "1",
  changed() { for (const fn of this.listeners) fn(this); },
  ack(ids) { for (const id of ids) this.unack.delete(id); this.changed(); },
};

export async function startAlerts() {
  stopAlerts();
  const lists = await lookup("/v1/watch-lists", true);
  const ackLists = [...lists.values()].filter((w) => w.require_ack && w.active);
  alerts.unack.clear(); alerts.capped = false;
  for (const w of ackLists) {
    const page = await get("/v1/events", { watch_list_id: w.id, acknowledged: false, limit: 1000 }).catch(() => ({ results: [] }));
    page.results.forEach((e) => alerts.unack.add(e.id));
    if (page.next_cursor) alerts.capped = true;
  }
  alerts.changed();
  alerts.stream = openStream({ matched: true }, async (e) => {
    const lists = await lookup("/v1/watch-lists");
    const w = lists.get(e.watch_list_id);
    if (!w || !w.require_ack || e.acknowledged) return;
    alerts.unack.add(e.id);
    alerts.changed();
    if (!alerts.muted) beep();
    notify(e, w);
  });
}

export function stopAlerts() { if (alerts.stream) alerts.stream.close(); alerts.stream = null; }

async function notify(e, w) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const { dossier } = await import("./state.js");
  const d = await dossier(e.dossier_id);
  const n = new Notification(`${w.name}: ${d ? d.name : "match"}`, {
    body: `confidence ${(100 * (e.confidence || 0)).toFixed(0)}%`, icon: e.media.thumbnail || undefined, tag: e.id,
  });
  n.onclick = () => { window.focus(); window.dispatchEvent(new CustomEvent("fw-navigate", { detail: `/events/${e.id}` })); };
}

export { getAll };
