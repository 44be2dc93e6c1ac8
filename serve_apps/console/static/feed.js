// An event as a row of the feed (live events, video wall, episode and video pages).
import { api } from "./api.js";
import { h, pct, fmtTime, toast, errorText } from "./ui.js";
import { can, dossier, dossierPhoto, lookup } from "./state.js";
import { alerts } from "./live.js";

/** Look-ups a row needs, loaded once per page. */
export async function feedContext() {
  const [lists, cameras] = await Promise.all([lookup("/v1/watch-lists"), lookup("/v1/cameras")]);
  return { lists, cameras };
}

export function eventRow(e, ctx, { fresh = false, onAck } = {}) {
  const list = ctx.lists.get(e.watch_list_id);
  const color = e.matched && list ? list.color : null;
  const needsAck = !!(list && list.require_ack && !e.acknowledged && e.matched);
  const ref = h("div", { class: "ref" });
  const name = h("a", { class: "name", href: `/events/${e.id}` }, e.matched ? "…" : "Unmatched face");
  const camera = ctx.cameras.get(e.camera_id);
  const where = camera ? camera.name : e.video_id ? `video ${e.video_id}` : "–";
  const ackState = h("span", { class: "pill " + (e.acknowledged ? "ack" : needsAck ? "unack" : "") },
    e.acknowledged ? "acknowledged" : needsAck ? "needs ack" : "new");
  const row = h("div", {
    class: "ev" + (e.matched ? "" : " unmatched") + (fresh ? " fresh" : "") + (needsAck ? " needs-ack" : ""),
    dataset: { id: e.id, matched: String(e.matched) }, style: color ? { borderLeftColor: color } : undefined,
  },
  h("img", { src: e.media.thumbnail || e.media.crop || "", alt: "face", loading: "lazy", width: 64, height: 64 }),
  ref,
  h("div", { class: "info" }, name,
    h("div", { class: "meta" }, list && e.matched ? [h("span", { class: "swatch", style: { background: list.color } }), list.name, " · "] : null,
      where, " · ", fmtTime(e.timestamp)),
    h("div", { class: "meta" }, `quality ${e.quality.toFixed(2)}`, e.age != null ? ` · age ${Math.round(e.age)}` : "",
      e.gender ? ` · ${e.gender.value}` : "", e.episode_id ? ` · episode ${e.episode_id}` : "")),
  h("div", { class: "side" },
    e.matched ? h("span", { class: "conf", title: "confidence" }, pct(e.confidence)) : null,
    ackState,
    can.write() && !e.acknowledged ? h("button", { class: "small", "data-action": "ack", onclick: (ev) => { ev.stopPropagation(); ackOne(e, row, onAck); } }, "Acknowledge") : null));
  row.addEventListener("click", (ev) => {
    if (ev.target.closest("a, button")) return;
    window.dispatchEvent(new CustomEvent("fw-navigate", { detail: `/events/${e.id}` }));
  });
  if (e.matched && e.dossier_id != null) {
    dossier(e.dossier_id).then((d) => { name.textContent = d ? d.name : `dossier ${e.dossier_id}`; });
    dossierPhoto(e.dossier_id, e.matched_face_id).then((src) => {
      if (src) ref.append(h("img", { src, alt: "dossier photo", loading: "lazy", width: 64, height: 64 }));
    });
  }
  return row;
}

export async function ackOne(e, row, onAck) {
  try {
    const updated = await api("POST", `/v1/events/${e.id}/ack`);
    Object.assign(e, updated);
    alerts.ack([e.id]);
    if (row) markAcked(row);
    if (onAck) onAck(e);
  } catch (x) { toast(errorText(x), "error"); }
}

export function markAcked(row) {
  row.classList.remove("needs-ack");
  const pill = row.querySelector(".pill");
  if (pill) { pill.className = "pill ack"; pill.textContent = "acknowledged"; }
  const b = row.querySelector('[data-action="ack"]');
  if (b) b.remove();
}
