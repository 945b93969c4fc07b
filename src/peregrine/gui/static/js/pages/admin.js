// Administration: users, my API tokens (shown once), the audit log, filtered and paged.

import { get, post } from "../api.js";
import { field, h, message, pageHead, replace, section, table, time, when } from "../dom.js";
import { pager } from "../components.js";

const AUDIT_PAGE = 50;
const ROLES = ["administrator", "investigator", "analyst", "reader", "api", "monitoring"];

export async function adminPage() {
  const users = h("div");
  const tokens = h("div");
  const userList = h("div");
  const audit = h("div");
  async function loadUsers() {
    const list = await get("/users");
    replace(userList, table([
      { label: "User", cell: (u) => u.name },
      { label: "Roles", cell: (u) => u.roles.join(", ") },
      { label: "Extra permissions", cell: (u) => u.permissions.join(", ") },
      { label: "Last sign-in", cell: (u) => when(u.last_login) },
      { label: "State", cell: (u) => u.disabled ? `disabled ${time(u.disabled)}` : "active" },
    ], list));
  }
  async function loadTokens() {
    const list = await get("/me/tokens");
    replace(tokens, table([
      { label: "Name", cell: (t) => t.name },
      { label: "Id", class: "mono", cell: (t) => t.token_id },
      { label: "Created", cell: (t) => when(t.created) },
      { label: "Expires", cell: (t) => time(t.expires) },
      { label: "Last used", cell: (t) => when(t.last_used) },
      { label: "State", cell: (t) => t.revoked ? "revoked" : "active" },
    ], list, { empty: "You have no API tokens." }));
  }
  await Promise.all([loadUsers(), loadTokens()]);
  // The forms stay put when the lists above them are redrawn (a new token stays shown).
  replace(users, userList, addUserForm(loadUsers));
  replace(audit, auditLog());
  const node = h("div", { class: "page" }, pageHead("Administration"),
    section("Users", users), section("My API tokens", tokens, newTokenForm(loadTokens)),
    section("Audit log", audit));
  return { node };
}

function addUserForm(done) {
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const role = h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r, selected: r === "reader" }, r)));
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const status = h("div");
  return h("form", { class: "inline-form wrap", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await post("/users", { name: name.value.trim(), roles: [role.value],
        password: password.value || null });
      await done();
    } catch (exc) {
      replace(status, message("error", exc.message));
    }
  } }, field("New user", name), field("Role", role), field("Password (optional)", password),
  h("button", { type: "submit" }, "Add user"), status);
}

function newTokenForm(done) {
  const name = h("input", { name: "token-name", value: "api" });
  const shown = h("div");
  return h("form", { class: "inline-form wrap", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const issued = await post("/me/tokens", { name: name.value.trim() || "api" });
      await done();
      replace(shown, message("info", "Copy this token now: it is not shown again."),
        h("pre", { class: "token" }, issued.token));
    } catch (exc) {
      replace(shown, message("error", exc.message));
    }
  } }, field("Token name", name), h("button", { type: "submit" }, "Make a token"), shown);
}

function auditLog() {
  const actor = h("input", { name: "actor", placeholder: "any" });
  const action = h("input", { name: "action", placeholder: "e.g. collection.create" });
  const target = h("input", { name: "target", placeholder: "any" });
  const body = h("div");
  async function load(offset) {
    const filters = { actor: actor.value.trim(), action: action.value.trim(), target: target.value.trim() };
    try {
      const entries = await get("/audit", { ...filters, limit: AUDIT_PAGE + 1, offset });
      replace(body, table([
        { label: "Time", cell: (e) => time(e.time) },
        { label: "Who", cell: (e) => e.actor },
        { label: "Action", class: "mono", cell: (e) => e.action },
        { label: "Target", class: "mono", cell: (e) => e.target || "" },
        { label: "Result", cell: (e) => e.reason ? `${e.result}: ${e.reason}` : e.result },
        { label: "From", class: "mono", cell: (e) => e.address || "" },
      ], entries.slice(0, AUDIT_PAGE), { empty: "No entry matches." }),
      pager({ offset, limit: AUDIT_PAGE, shown: Math.min(entries.length, AUDIT_PAGE),
        more: entries.length > AUDIT_PAGE, onPage: load, label: "entries" }));
    } catch (exc) {
      replace(body, message("error", exc.message));
    }
  }
  load(0);
  return h("div", {}, h("form", { class: "inline-form wrap", onsubmit: (e) => { e.preventDefault(); load(0); } },
    field("Who", actor), field("Action", action), field("Target", target),
    h("button", { type: "submit" }, "Filter")), body);
}
