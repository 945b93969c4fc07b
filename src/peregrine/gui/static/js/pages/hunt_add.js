// hunt_add from the hunt's page: one client, by its id or host name, gets the hunt now, even
// a paused or expired one (the API's POST /hunts/<id>/clients/<client>, audited).

import { get, post } from "../api.js";
import { field, h, message, replace, setFieldError } from "../dom.js";

const CLIENT_ID = /^C\.[0-9a-f]{16}$/;

/** The client id a user typed, or the one client with that host name; throws what to do. */
async function resolve(text) {
  if (CLIENT_ID.test(text)) return { client_id: text, hostname: text };
  const found = await get("/clients", { q: `host:${text}`, limit: 2 });
  if (!found.items.length) throw new Error(`No client has the host name ${text}: check it, or give the client id.`);
  if (found.items.length > 1) throw new Error(`More than one client has the host name ${text}: give the client id.`);
  return found.items[0];
}

export function huntAddForm(huntId, onAdded) {
  const input = h("input", { name: "client", placeholder: "C.… or host name", autocomplete: "off",
    class: "mono" });
  const status = h("div", { role: "status" });
  const form = h("form", { class: "inline-form wrap", onsubmit: async (event) => {
    event.preventDefault();
    replace(status);
    const text = input.value.trim();
    if (!text) {
      setFieldError(input, "Give a client id or a host name.");
      return;
    }
    try {
      const client = await resolve(text);
      const added = await post(`/hunts/${huntId}/clients/${client.client_id}`);
      replace(status, message("info", added
        ? `Added ${client.hostname || client.client_id}: it gets the hunt now.`
        : `${client.hostname || client.client_id} already has this hunt (a hunt runs on a client once).`));
      input.value = "";
      onAdded();
    } catch (exc) {
      setFieldError(input, exc.message);
      input.focus();
    }
  } }, field("Add a client to this hunt", input), h("button", { type: "submit" }, "Add client"));
  return h("div", { class: "hunt-add" }, form, status);
}
