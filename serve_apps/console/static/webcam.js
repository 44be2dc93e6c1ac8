// A dossier photo from the webcam: only where the browser offers a camera (getUserMedia needs a secure
// context: https, or the console opened on localhost). The picture is taken in the browser and enrolled
// like a chosen file, so the same errors in words apply.
import { h, clear, dialog, errorBox } from "./ui.js";

export const webcamAvailable = () => !!(window.isSecureContext && navigator.mediaDevices && navigator.mediaDevices.getUserMedia);

/** A "Take a photo with the webcam" button (null where there is no webcam API); onPhoto(File). */
export function webcamButton(onPhoto) {
  if (!webcamAvailable()) return null;
  return h("button", { type: "button", "data-testid": "webcam", onclick: () => capture(onPhoto) }, "Take a photo with the webcam");
}

async function capture(onPhoto) {
  const video = h("video", { autoplay: true, muted: true, playsinline: true, "data-testid": "webcam-video", style: { width: "100%", maxWidth: "640px", background: "#000" } });
  const state = h("div", {}, h("p", { class: "dim" }, "Asking for the camera…"));
  let stream = null;
  const taken = dialog("Webcam", h("div", {}, video, state), { ok: "Take the photo", onOk: () => {
    if (!stream || !video.videoWidth) throw new Error("the camera shows nothing yet");
    const canvas = h("canvas", { width: video.videoWidth, height: video.videoHeight });
    canvas.getContext("2d").drawImage(video, 0, 0);
    // A lossless PNG: the face is analysed exactly as the camera showed it.
    return new Promise((resolve, reject) => canvas.toBlob((blob) => blob ? resolve(new File([blob], `webcam-${Date.now()}.png`, { type: "image/png" })) : reject(new Error("the picture could not be taken")), "image/png"));
  } });
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    video.srcObject = stream;
    clear(state, h("p", { class: "dim" }, "Look at the camera, then take the photo."));
  } catch (err) {
    clear(state, errorBox({ message: err.name === "NotAllowedError" ? "the browser was not allowed to use the camera" : `no camera: ${err.message || err.name}` }));
  }
  const file = await taken;
  if (stream) stream.getTracks().forEach((t) => t.stop()); // the camera's light goes off with the dialog
  if (file) onPhoto(file);
}
