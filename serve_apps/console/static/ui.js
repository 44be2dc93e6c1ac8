// Small DOM helpers: an element builder, dialogs (native <dialog>: Esc closes), toasts, formatting.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) { el.replaceChildren(); append(el, children); return el; }

const ERROR_WORDS = {
  NO_FACE: "No face was found in this photo.",
  TOO_MANY_FACES: "This photo holds several faces: pick the one to use.",
  LOW_QUALITY: "The face is of too low a quality (too small, blurred or turned away).",
  BAD_IMAGE: "This file is not an image facewatch can read (JPEG, PNG, WebP or BMP).",
  TOO_LARGE: "The file is too large.",
  AUTH_FAILED: "Wrong username or password.",
  FORBIDDEN: "Your role may not do this.",
  NOT_FOUND: "It does not exist (or is hidden from you).",
  TOO_MANY_REQUESTS: "Too many attempts; wait a moment and try again.",
  SERVICE_UNAVAILABLE: "The service is briefly unavailable; try again.",
  NETWORK: "The service cannot be reached.",
};

/** An error in words: the API's own reason, led by a plain sentence for the well-known codes. */
export function errorText(err) {
  if (!err) return "";
  const words = ERROR_WORDS[err.code];
  const reason = err.message || "";
  // The reason is added only when it tells more than the sentence ("No face was found in this photo."
  // and "no face was found in the photo" are the same words twice).
  const gist = (t) => t.toLowerCase().replace(/[^a-z0-9 ]/g, " ").replace(/\b(the|this|a|an|in|photo|image)\b/g, " ").replace(/\s+/g, " ").trim();
  if (words && reason && !gist(words).includes(gist(reason))) return `${words} (${reason})`;
  return words || reason || String(err);
}

export function errorBox(err) { return h("div", { class: "msg error", role: "alert" }, errorText(err)); }

let toastHost;
export function toast(text, kind = "") {
  if (!toastHost) { toastHost = h("div", { class: "toasts", role: "status" }); document.body.append(toastHost); }
  const t = h("div", { class: "toast " + kind }, text);
  toastHost.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 7000 : 3500);
}

/** A modal dialog; resolves with what `onOk` returns (or null on Esc/Cancel). onOk may throw to stay open. */
export function dialog(title, body, { ok = "Save", onOk, cancel = "Cancel", danger = false } = {}) {
  return new Promise((resolve) => {
    const err = h("div");
    const okButton = onOk ? h("button", { class: danger ? "danger" : "primary", type: "submit" }, ok) : null;
    const form = h("form", { method: "dialog" },
      h("h1", {}, title, h("button", { type: "button", class: "small", "aria-label": "Close", onclick: () => dlg.close() }, "✕")),
      body, err,
      h("div", { class: "actions" }, h("button", { type: "button", onclick: () => dlg.close() }, onOk ? cancel : "Close"), okButton));
    const dlg = h("dialog", {}, form);
    let result = null;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!onOk) return dlg.close();
      okButton.disabled = true;
      try { result = await onOk(form); dlg.close(); } catch (x) { clear(err, errorBox(x)); } finally { okButton.disabled = false; }
    });
    dlg.addEventListener("close", () => { dlg.remove(); resolve(result); });
    document.body.append(dlg);
    dlg.showModal();
    const first = form.querySelector("input, select, textarea");
    if (first) first.focus();
  });
}

export function confirmDialog(text, ok = "Delete") {
  return dialog("Are you sure?", h("p", {}, text), { ok, danger: true, onOk: () => true });
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

export function pct(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(1) + "%"; }

export function statusTag(s) { return h("span", { class: "status " + s }, s); }

/** A field: label + input; `opts` are input attributes. */
export function field(label, input, cls = "") { return h("label", { class: cls }, label, input); }

export function formValues(form) {
  const out = {};
  for (const el of form.querySelectorAll("[name]")) {
    if (el.type === "checkbox" && el.dataset.group) {
      out[el.name] = out[el.name] || [];
      if (el.checked) out[el.name].push(Number(el.value));
    } else if (el.type === "checkbox") out[el.name] = el.checked;
    else if (el.type === "number") out[el.name] = el.value === "" ? null : Number(el.value);
    else out[el.name] = el.value;
  }
  return out;
}

/** Checkboxes for a set of ids (watch lists, camera groups...). */
export function checkGroup(name, items, selected, label = (x) => x.name) {
  const chosen = new Set(selected || []);
  return h("div", { class: "checks" }, items.map((it) =>
    h("label", { class: "inline" }, h("input", { type: "checkbox", name, value: String(it.id), dataset: { group: "1" }, checked: chosen.has(it.id) }), label(it))));
}

/** A file drop zone + file input; onFiles(File[] or a dropped FileList). */
export function dropZone(text, onFiles, { accept = "image/*", multiple = false } = {}) {
  // The chosen files are handed over and the input emptied: choosing the same photo again (after fixing
  // it, or a retry) must fire `change` again, and a new choice must not carry the previous files along.
  const input = h("input", { type: "file", accept, multiple, onchange: () => {
    const files = [...input.files];
    input.value = "";
    if (files.length) onFiles(files);
  } });
  const zone = h("div", { class: "drop" }, h("span", {}, text), input);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); if (e.dataTransfer.files.length) onFiles(e.dataTransfer.files); });
  return zone;
}

/** Boxes over an image, in the image's pixel coordinates; positioned in % so they follow resizing. */
export function boxedImage(src, boxes, { onPick, className = "" } = {}) {
  const img = h("img", { src, alt: "" });
  const wrap = h("div", { class: "frame " + className }, img);
  const place = () => {
    const W = img.naturalWidth, H = img.naturalHeight;
    if (!W) return;
    wrap.querySelectorAll(".box").forEach((b) => b.remove());
    boxes.forEach((b, i) => {
      const [x1, y1, x2, y2] = b.bbox || b;
      const box = h(onPick ? "button" : "div", {
        class: "box " + (b.kind || "") + (onPick ? " pick" : ""), type: onPick ? "button" : undefined,
        "aria-label": onPick ? `face ${i + 1}` : undefined,
        style: { left: (100 * x1 / W) + "%", top: (100 * y1 / H) + "%", width: (100 * (x2 - x1) / W) + "%", height: (100 * (y2 - y1) / H) + "%" },
        onclick: onPick ? () => onPick(b, i) : undefined,
      }, b.label ? h("span", { class: "tag" }, b.label) : null);
      wrap.append(box);
    });
  };
  img.addEventListener("load", place);
  wrap.redraw = (newBoxes) => { boxes = newBoxes; place(); };
  wrap.img = img;
  return wrap;
}

export function emptyRow(cols, text = "Nothing here yet.") {
  return h("tr", {}, h("td", { colspan: cols, class: "dim" }, text));
}
