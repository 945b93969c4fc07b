// Launch a collection on one client: artifacts, their parameters, limits.

import { get, post } from "../api.js";
import { h, link, message, pageHead } from "../dom.js";
import { artifactLauncher, limitsForm } from "../components.js";
import { navigate } from "../router.js";
import { can } from "../session.js";

export async function launchPage([clientId], query) {
  const client = await get(`/clients/${clientId}`);
  if (!can("COLLECT_CLIENT")) {
    return { node: h("div", { class: "page" }, pageHead("New collection"),
      message("error", "Your account may not start collections (it lacks COLLECT_CLIENT): " +
        "ask an administrator for the analyst or investigator role.")) };
  }
  const launcher = artifactLauncher({ initial: query.getAll("artifact") });
  const limits = limitsForm();
  const button = h("button", { type: "submit", class: "primary" }, "Launch");
  const form = h("form", { class: "launch", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const artifacts = launcher.values();
    const limitValues = limits.values();
    if (!artifacts || !limitValues) return;
    button.disabled = true;
    try {
      const flow = await post("/collections", { client_id: clientId, artifacts, limits: limitValues });
      navigate(`/ui/collections/${flow.flow_id}`);
    } catch (exc) {
      launcher.showServerError(exc.message); // next to the field it names, if it names one
    } finally {
      button.disabled = false;
    }
  } }, launcher.node, limits.node, h("div", { class: "form-actions" }, button,
    link(`/ui/clients/${clientId}`, "Cancel")));
  const node = h("div", { class: "page" },
    pageHead("New collection", { sub: ["on ", link(`/ui/clients/${clientId}`, client.hostname || clientId),
      client.online ? " (online: it starts now)" : " (offline: it starts when the client connects)"] }),
    form);
  return { node };
}
