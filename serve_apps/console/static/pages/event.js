// Event detail: the full frame with the face box, thumbnail and normalised crop, attributes, camera,
// time, episode and the matched dossier; acknowledge, "not this person" (the face becomes a negative of
// the dossier and the event is unmatched), search with this face, a dossier from this face.
import { api, get } from "../api.js";
import { h, clear, boxedImage, pct, fmtTime, toast, errorText, dialog, field, checkGroup, formValues } from "../ui.js";
import { can, dossier, dossierPhoto, lookup, forgetDossier } from "../state.js";
import { alerts } from "../live.js";

export async function render(main, { id }, { navigate }) {
  const e = await get(`/v1/events/${encodeURIComponent(id)}`);
  const [lists, cameras] = await Promise.all([lookup("/v1/watch-lists"), lookup("/v1/cameras")]);
  const list = lists.get(e.watch_list_id);
  const camera = cameras.get(e.camera_id);
  const d = e.matched ? await dossier(e.dossier_id) : null;
  const refSrc = d ? await dossierPhoto(d.id, e.matched_face_id) : null;

  const frame = e.media.frame
    ? boxedImage(e.media.frame, [{ bbox: e.bbox, label: d ? d.name : "face" }])
    : h("p", { class: "dim" }, "No full frame was kept for this event.");
  const ackState = h("span", { class: "pill " + (e.acknowledged ? "ack" : "unack"), "data-testid": "ack-state" },
    e.acknowledged ? `acknowledged by ${e.acknowledged_by || "?"} ${fmtTime(e.acknowledged_at)}` : "not acknowledged");
  const ackButton = can.write() && !e.acknowledged ? h("button", { class: "primary", "data-testid": "ack", onclick: async () => {
    try {
      Object.assign(e, await api("POST", `/v1/events/${e.id}/ack`));
      alerts.ack([e.id]);
      ackState.className = "pill ack"; ackState.textContent = `acknowledged by ${e.acknowledged_by || "you"}`;
      ackButton.remove(); toast("Acknowledged.", "ok");
    } catch (x) { toast(errorText(x), "error"); }
  } }, "Acknowledge") : null;

  const attrs = Object.entries(e.attributes || {}).filter(([k]) => !["age", "gender"].includes(k));
  const info = h("dl", { class: "kv" },
    h("dt", {}, "Time"), h("dd", {}, fmtTime(e.timestamp), e.video_offset_s != null ? ` (video at ${e.video_offset_s.toFixed(1)} s)` : ""),
    h("dt", {}, "Camera"), h("dd", {}, camera ? h("a", { href: `/cameras/${camera.id}` }, camera.name) : e.camera_id ?? "–"),
    e.video_id ? [h("dt", {}, "Video"), h("dd", {}, h("a", { href: `/videos/${e.video_id}` }, `video ${e.video_id}`))] : null,
    h("dt", {}, "Match"), h("dd", {}, e.matched
      ? [list ? [h("span", { class: "swatch", style: { background: list.color } }), list.name, " · "] : null,
        d ? h("a", { href: `/dossiers/${d.id}` }, d.name) : `dossier ${e.dossier_id}`, " · ", h("b", {}, pct(e.confidence))]
      : "unmatched"),
    h("dt", {}, "Episode"), h("dd", {}, e.episode_id ? h("a", { href: `/episodes/${e.episode_id}` }, `episode ${e.episode_id}`) : "–"),
    h("dt", {}, "Quality"), h("dd", {}, e.quality.toFixed(3), ` (detector ${e.detection_score.toFixed(3)})`),
    h("dt", {}, "Age / gender"), h("dd", {}, e.age != null ? Math.round(e.age) : "–", " / ", e.gender ? `${e.gender.value} (${pct(e.gender.confidence)})` : "–"),
    attrs.map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, typeof v === "object" ? JSON.stringify(v) : String(v))]),
    h("dt", {}, "Box"), h("dd", { class: "mono" }, e.bbox.map((v) => Math.round(v)).join(", ")),
    h("dt", {}, "Track"), h("dd", {}, e.track_id ?? "–"),
    h("dt", {}, "Event id"), h("dd", { class: "mono" }, e.id),
    h("dt", {}, "Status"), h("dd", {}, ackState));

  const faces = h("div", { class: "faces-pair" },
    e.media.thumbnail ? h("figure", {}, h("img", { src: e.media.thumbnail, alt: "thumbnail" }), h("figcaption", {}, "thumbnail")) : null,
    e.media.crop ? h("figure", {}, h("img", { src: e.media.crop, alt: "normalised crop" }), h("figcaption", {}, "normalised crop")) : null,
    refSrc ? h("figure", {}, h("img", { src: refSrc, alt: "dossier photo" }), h("figcaption", {}, "dossier photo")) : null);

  const rejectButton = can.write() && e.matched ? h("button", { class: "danger", "data-testid": "reject-match",
    onclick: () => rejectMatch(e, d, main, navigate) }, "Not this person") : null;

  const actions = h("div", { class: "toolbar" }, ackButton, rejectButton,
    h("a", { class: "button", href: `/search?event_id=${encodeURIComponent(e.id)}&target=events`, "data-testid": "search-face" }, "Search with this face"),
    h("a", { class: "button", href: `/search?event_id=${encodeURIComponent(e.id)}&target=dossiers` }, "Find in dossiers"),
    can.write() ? h("button", { "data-testid": "dossier-from-face", onclick: () => dossierFromFace(e, lists, navigate) }, "Create a dossier from this face") : null,
    e.media.frame ? h("a", { class: "button", href: e.media.frame, target: "_blank", rel: "noopener" }, "Open the frame") : null);

  clear(main, h("h1", {}, d ? d.name : e.matched ? "Match" : "Unmatched face", " ", h("span", { class: "dim" }, fmtTime(e.timestamp))),
    actions, h("div", { class: "detail" }, h("div", {}, frame), h("div", { class: "panel" }, faces, h("h2", {}, "Details"), info)));
}

async function rejectMatch(e, d, main, navigate) {
  const who = d ? d.name : `dossier ${e.dossier_id}`;
  const done = await dialog("Not this person", h("p", {},
    `This face will be kept as a negative example of ${who} and the event moves to Unmatched. `,
    `Faces closer to it than to ${who}'s best photo will no longer match ${who}. `,
    "The dossier's negatives can be removed again through the API."), {
    ok: "Not this person", danger: true, onOk: async () => api("POST", `/v1/events/${encodeURIComponent(e.id)}/reject-match`) });
  if (!done) return;
  toast(`Not ${who}: the face is kept as a negative example.`, "ok");
  await render(main, { id: e.id }, { navigate });
}

async function dossierFromFace(e, lists, navigate) {
  const choices = [...lists.values()].filter((w) => !w.builtin);
  const name = h("input", { name: "name", required: true, maxlength: 300 });
  const result = await dialog("Create a dossier from this face", h("div", { class: "form" },
    field("Name", name, "wide"), h("div", { class: "wide" }, h("h2", {}, "Watch lists"), checkGroup("watch_list_ids", choices, []))), {
    ok: "Create", onOk: async (form) => {
      const v = formValues(form);
      // The face is enrolled from the full frame with the event's box (the detector re-finds it there),
      // or from the thumbnail when no frame was kept.
      const source = e.media.frame || e.media.thumbnail;
      const blob = await fetch(source, { credentials: "same-origin" }).then((r) => { if (!r.ok) throw new Error("the event's image cannot be read"); return r.blob(); });
      const created = await api("POST", "/v1/dossiers", { json: { name: v.name.trim(), watch_list_ids: v.watch_list_ids } });
      const photo = new FormData();
      photo.append("photo", blob, "event.jpg");
      if (e.media.frame) photo.append("bbox", JSON.stringify(e.bbox));
      try { await api("POST", `/v1/dossiers/${created.id}/faces`, { form: photo }); } catch (x) {
        toast(`The dossier was created, but the face was not enrolled: ${errorText(x)}`, "error");
      }
      forgetDossier(created.id);
      return created;
    } });
  if (result) { toast(`Dossier “${result.name}” created.`, "ok"); navigate(`/dossiers/${result.id}`); }
}
