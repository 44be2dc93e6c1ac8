// Session state and cached look-ups of small collections (names and colours shown beside events).
import { get, getAll } from "./api.js";

export const session = { user: null };

export const can = {
  admin: () => session.user && session.user.role === "admin",
  write: () => session.user && session.user.role !== "viewer", // dossiers, watch lists, acks
};

const caches = new Map();

/** A cached list (watch lists, cameras, camera groups) as a Map id → object; `fresh` reloads. */
export async function lookup(path, fresh = false) {
  if (fresh || !caches.has(path)) {
    const p = getAll(path).then((rows) => new Map(rows.map((r) => [r.id, r]))).catch(() => new Map());
    caches.set(path, p);
  }
  return caches.get(path);
}

export function invalidate(path) { caches.delete(path); }
export function invalidateAll() { caches.clear(); dossierCache.clear(); photoCache.clear(); }

const dossierCache = new Map();
const photoCache = new Map();

/** A dossier by id (cached promise; null when hidden or gone). */
export function dossier(id) {
  if (id === null || id === undefined) return Promise.resolve(null);
  if (!dossierCache.has(id)) dossierCache.set(id, get(`/v1/dossiers/${id}`).catch(() => null));
  return dossierCache.get(id);
}

/** The URL of a face photo of a dossier (the matched face when given, otherwise its first face). */
export function dossierPhoto(dossierId, faceId) {
  const key = `${dossierId}/${faceId || ""}`;
  if (!photoCache.has(key)) {
    const p = faceId
      ? get(`/v1/dossiers/${dossierId}/faces/${faceId}`).then((f) => f.crop || f.photo).catch(() => dossierFirstPhoto(dossierId))
      : dossierFirstPhoto(dossierId);
    photoCache.set(key, p);
  }
  return photoCache.get(key);
}

function dossierFirstPhoto(dossierId) {
  return get(`/v1/dossiers/${dossierId}/faces`).then((p) => (p.results[0] ? p.results[0].crop || p.results[0].photo : null)).catch(() => null);
}

export function forgetDossier(id) {
  dossierCache.delete(id);
  for (const k of [...photoCache.keys()]) if (k.startsWith(id + "/")) photoCache.delete(k);
}
