// The console's shell: sign-in, the role-aware navigation, a History-API router over the pages.
import { api, ApiError, setCsrf, setUnauthorizedHandler } from "./api.js";
import { h, clear, errorBox, toast } from "./ui.js";
import { session, invalidateAll } from "./state.js";
import { alerts, startAlerts, stopAlerts, enableNotifications } from "./live.js";

const root = document.getElementById("app");

// path pattern → [module, title, nav section]; `admin: true` pages are absent from a non-admin's menu.
const ROUTES = [
  ["/events", "events", "Live events"],
  ["/events/:id", "event"],
  ["/episodes", "episodes", "Episodes"],
  ["/episodes/:id", "episodes"],
  ["/persons", "persons", "Persons"],
  ["/persons/:id", "persons"],
  ["/wall", "wall", "Video wall"],
  ["/search", "search", "Search"],
  ["/verify", "search"],
  ["/dossiers", "dossiers", "Dossiers"],
  ["/dossiers/bulk", "dossiers"],
  ["/dossiers/:id", "dossiers"],
  ["/watch-lists", "watchlists", "Watch lists"],
  ["/cameras", "cameras", "Cameras", { notViewer: true }],
  ["/cameras/:id", "cameras", null, { notViewer: true }],
  ["/videos", "videos", "Videos", { notViewer: true }],
  ["/videos/:id", "videos", null, { notViewer: true }],
  ["/admin", "admin", "Administration", { admin: true }],
  ["/admin/:tab", "admin", null, { admin: true }],
  ["/account", "account", "My account"],
];

function allowed(opts = {}) {
  const role = session.user && session.user.role;
  if (opts.admin) return role === "admin";
  if (opts.notViewer) return role !== "viewer";
  return true;
}

function match(path) {
  for (const [pattern, module, title, opts] of ROUTES) {
    const names = [];
    const re = new RegExp("^" + pattern.replace(/:(\w+)/g, (_, n) => { names.push(n); return "([^/]+)"; }) + "/?$");
    const m = path.match(re);
    if (m) return { pattern, module, title, opts, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1])])) };
  }
  return null;
}

let cleanup = null;
let nav, main, unackBadge;

export function navigate(path, replace = false) {
  if (replace) history.replaceState(null, "", path); else history.pushState(null, "", path);
  route();
}
window.addEventListener("fw-navigate", (e) => navigate(e.detail));
window.addEventListener("popstate", () => route());
document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[href]");
  if (!a || a.target || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  const href = a.getAttribute("href");
  if (!href.startsWith("/") || href.startsWith("/v1/") || href.startsWith("/docs")) return;
  e.preventDefault();
  navigate(href);
});

function shell() {
  unackBadge = h("span", { class: "badge zero", title: "unacknowledged alerts", "data-testid": "unack" }, "0");
  const links = ROUTES.filter(([, , title, opts]) => title && allowed(opts)).map(([pattern, , title]) =>
    h("a", { href: pattern, dataset: { section: pattern } }, title, pattern === "/events" ? unackBadge : null));
  const toggle = h("button", { class: "menu-toggle small", "aria-label": "Menu", onclick: () => nav.classList.toggle("open") }, "☰");
  const bell = h("button", { class: "small", onclick: async () => {
    const r = await enableNotifications();
    toast(r === "granted" ? "Desktop notifications and sound are on." : `Notifications: ${r}.`);
  } }, "Enable alerts");
  const mute = h("button", { class: "small", "aria-pressed": String(alerts.muted), onclick: () => {
    alerts.muted = !alerts.muted; localStorage.setItem("fw_muted", alerts.muted ? "1" : "0");
    mute.textContent = alerts.muted ? "Sound off" : "Sound on"; mute.setAttribute("aria-pressed", String(alerts.muted));
  } }, alerts.muted ? "Sound off" : "Sound on");
  nav = h("aside", { class: "nav" },
    h("div", { class: "top" }, h("div", { class: "brand" }, h("img", { src: "/console/icon.svg", alt: "" }), "facewatch"), toggle),
    h("nav", { "aria-label": "Main" }, links),
    h("div", { class: "who" },
      h("span", {}, "Signed in as ", h("b", { "data-testid": "whoami" }, session.user.username), ` (${session.user.role})`),
      h("div", { class: "checks" }, bell, mute),
      h("button", { class: "small", "data-testid": "signout", onclick: signOut }, "Sign out")));
  main = h("main", { id: "main", tabindex: "-1" });
  clear(root, h("div", { class: "shell" }, nav, main));
  alerts.listeners.clear();
  alerts.listeners.add((a) => {
    unackBadge.textContent = a.unack.size + (a.capped ? "+" : "");
    unackBadge.classList.toggle("zero", a.unack.size === 0);
  });
}

async function route() {
  const path = location.pathname === "/" ? "/events" : location.pathname;
  if (!session.user) return signInPage();
  if (path === "/signin") return navigate("/events", true);
  if (!main) shell();
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } cleanup = null; }
  nav.classList.remove("open");
  const found = match(path);
  for (const a of nav.querySelectorAll("nav a")) {
    const s = a.dataset.section;
    a.classList.toggle("active", path === s || path.startsWith(s + "/") || (s === "/search" && path === "/verify"));
  }
  if (!found || !allowed(found.opts)) {
    clear(main, h("h1", {}, "Not found"), h("p", { class: "dim" }, "This page does not exist, or your role does not see it."));
    return;
  }
  document.title = `${found.title || found.module} · facewatch`;
  clear(main, h("p", { class: "dim" }, "Loading…"));
  try {
    const page = await import(`./pages/${found.module}.js`);
    const token = Symbol();
    route.current = token;
    const done = await page.render(main, found.params, { navigate, path, pattern: found.pattern });
    if (route.current !== token) { if (typeof done === "function") done(); return; }
    cleanup = typeof done === "function" ? done : null;
  } catch (err) {
    console.error(err);
    clear(main, errorBox(err instanceof ApiError ? err : { message: String(err) }));
  }
}

function signInPage(message) {
  main = null;
  stopAlerts();
  const user = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true, id: "username" });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, id: "password" });
  const err = h("div", { "data-testid": "signin-error" }, message ? errorBox({ message }) : null);
  const button = h("button", { class: "primary", type: "submit", id: "signin" }, "Sign in");
  const form = h("form", { "aria-label": "Sign in", onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true;
    clear(err);
    try {
      const r = await api("POST", "/v1/auth/login", { json: { username: user.value.trim(), password: pass.value }, quiet401: true });
      await signedIn(r);
      const back = sessionStorage.getItem("fw_after_signin");
      sessionStorage.removeItem("fw_after_signin");
      navigate(back && back !== "/signin" ? back : "/events", true);
    } catch (x) {
      pass.value = "";
      clear(err, errorBox(x));
      pass.focus();
    } finally { button.disabled = false; }
  } },
    h("div", { class: "brand" }, h("img", { src: "/console/icon.svg", alt: "" }), "facewatch"),
    h("label", { for: "username" }, "Username", user), h("label", { for: "password" }, "Password", pass), err, button);
  if (location.pathname !== "/signin") {
    sessionStorage.setItem("fw_after_signin", location.pathname + location.search);
    history.replaceState(null, "", "/signin");
  }
  document.title = "Sign in · facewatch";
  clear(root, h("div", { class: "signin" }, form));
  user.focus();
}

async function signedIn(r) {
  session.user = r.user;
  setCsrf(r.csrf_token);
  invalidateAll();
  main = null;
  startAlerts().catch((e) => console.warn("alerts", e));
}

async function signOut() {
  // The live streams close first: they hold connections the sign-out request must not queue behind.
  stopAlerts();
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } cleanup = null; }
  try { await api("POST", "/v1/auth/logout", { timeoutMs: 8000 }); } catch { /* the session may be gone already */ }
  session.user = null;
  invalidateAll();
  signInPage();
}

setUnauthorizedHandler(() => {
  if (!session.user) return;
  session.user = null;
  signInPage("Your session has ended; sign in again.");
});

async function boot() {
  try {
    const r = await api("GET", "/v1/auth/me", { quiet401: true });
    await signedIn(r);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) console.warn("auth/me", e);
  }
  route();
}

boot();
