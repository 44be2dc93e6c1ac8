// My account: change my password; my API tokens (list, create, revoke).
import { api } from "../api.js";
import { h, clear, field, toast, errorText, formValues } from "../ui.js";
import { session } from "../state.js";
import { tokenList } from "./admin.js";

export async function render(main) {
  const form = h("form", { class: "panel", onsubmit: async (e) => {
    e.preventDefault();
    const v = formValues(form);
    if (v.password !== v.again) return toast("The two new passwords differ.", "error");
    try { await api("PUT", `/v1/users/${session.user.id}/password`, { json: { password: v.password, current_password: v.current } }); form.reset(); toast("Password changed.", "ok"); } catch (x) { toast(errorText(x), "error"); }
  } }, h("div", { class: "form" },
    field("Current password", h("input", { type: "password", name: "current", required: true, autocomplete: "current-password" })),
    field("New password (8 characters or more)", h("input", { type: "password", name: "password", minlength: 8, required: true, autocomplete: "new-password" })),
    field("New password again", h("input", { type: "password", name: "again", minlength: 8, required: true, autocomplete: "new-password" }))),
  h("div", { class: "toolbar", style: { marginTop: "10px" } }, h("button", { class: "primary", type: "submit" }, "Change password")));
  const tokens = h("div", { "data-testid": "tokens" });
  clear(main, h("h1", {}, "My account"), h("p", {}, `${session.user.username}, ${session.user.role}`),
    h("h2", {}, "Password"), form, h("h2", {}, "API tokens"), tokens);
  await tokenList(tokens, null);
}
