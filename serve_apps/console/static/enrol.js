// Enrolling a photo into a dossier, with the errors in words; TOO_MANY_FACES shows the boxes and the
// operator picks one (sent again with the `bbox` form field).
import { api } from "./api.js";
import { h, clear, errorBox, boxedImage } from "./ui.js";

/** Enrols `file`; renders progress and errors into `out`; resolves with the answer or null. */
export async function enrolPhoto(dossierId, file, out, bbox = null) {
  clear(out, h("p", { class: "dim" }, `Enrolling ${file.name || "photo"}…`));
  const form = new FormData();
  form.append("photo", file, file.name || "photo.jpg");
  form.append("face_select", bbox ? "biggest" : "reject");
  if (bbox) form.append("bbox", JSON.stringify(bbox));
  try {
    const r = await api("POST", `/v1/dossiers/${dossierId}/faces`, { form });
    clear(out, h("div", { class: "msg ok", "data-testid": "enrol-ok" }, `Face enrolled (quality ${r.quality.toFixed(2)}).`));
    return r;
  } catch (err) {
    const box = errorBox(err);
    box.dataset.code = err.code;
    box.dataset.testid = "enrol-error";
    if (err.code === "TOO_MANY_FACES" && Array.isArray(err.body.boxes)) {
      const url = URL.createObjectURL(file);
      return new Promise((resolve) => {
        const pick = boxedImage(url, err.body.boxes.map((b, i) => ({ bbox: b, label: String(i + 1) })), {
          onPick: async (b) => resolve(await enrolPhoto(dossierId, file, out, b.bbox)),
        });
        clear(out, box, h("p", {}, "Click the face to enrol:"), pick);
      });
    }
    clear(out, box);
    return null;
  }
}
