// Enrolling a photo into a dossier, with the errors in words; TOO_MANY_FACES shows the boxes and the
// operator picks one (sent again with the `bbox` form field).
import { api } from "./api.js";
import { h, clear, errorBox, boxedImage } from "./ui.js";

/** Enrols `file`, rendering progress and the answer (the error in words) into `out`; resolves with the
 * answer, or null when refused. A photo of several faces resolves null at once with its faces shown:
 * a click on one enrols that face (and calls `onEnrolled`), so that it never holds up the next photo. */
export async function enrolPhoto(dossierId, file, out, { bbox = null, onEnrolled = () => {} } = {}) {
  clear(out, h("p", { class: "dim" }, `Enrolling ${file.name || "photo"}…`));
  const form = new FormData();
  form.append("photo", file, file.name || "photo.jpg");
  form.append("face_select", bbox ? "biggest" : "reject");
  if (bbox) form.append("bbox", JSON.stringify(bbox));
  try {
    const r = await api("POST", `/v1/dossiers/${dossierId}/faces`, { form });
    clear(out, h("div", { class: "msg ok", "data-testid": "enrol-ok" }, `Face enrolled (quality ${r.quality.toFixed(2)}).`));
    onEnrolled(r);
    return r;
  } catch (err) {
    const box = errorBox(err);
    box.dataset.code = err.code;
    box.dataset.testid = "enrol-error";
    if (err.code === "TOO_MANY_FACES" && Array.isArray(err.body.boxes)) {
      const url = URL.createObjectURL(file);
      const pick = boxedImage(url, err.body.boxes.map((b, i) => ({ bbox: b, label: String(i + 1) })), {
        onPick: (b) => enrolPhoto(dossierId, file, out, { bbox: b.bbox, onEnrolled }),
      });
      clear(out, box, h("p", {}, "Click the face to enrol:"), pick);
      return null;
    }
    clear(out, box);
    return null;
  }
}

/** Enrols several photos one after the other, each answered on its own line of `out` (named after its
 * file): one refused photo neither hides the answers of the others nor stops them. */
export async function enrolPhotos(dossierId, files, out, onEnrolled) {
  const lines = [...files].map((file) => {
    const answer = h("div", {}, h("p", { class: "dim" }, "Waiting…"));
    return { file, answer, line: h("div", { class: "enrol-line", "data-testid": "enrol-line", dataset: { file: file.name || "photo" } },
      h("div", { class: "mono dim" }, file.name || "photo"), answer) };
  });
  clear(out, lines.map((l) => l.line));
  for (const { file, answer } of lines) await enrolPhoto(dossierId, file, answer, { onEnrolled });
}
