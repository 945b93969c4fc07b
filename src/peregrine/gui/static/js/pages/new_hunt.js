// Create a hunt: artifacts and parameters, which clients, how fast, how long.

import { post } from "../api.js";
import { field, h, link, message, pageHead, replace, setFieldError } from "../dom.js";
import { artifactLauncher, limitsForm } from "../components.js";
import { navigate } from "../router.js";
import { can } from "../session.js";

const OSES = ["linux", "windows", "darwin"];

export async function newHuntPage(_params, query) {
  if (!can("START_HUNT")) {
    return { node: h("div", { class: "page" }, pageHead("New hunt"),
      message("error", "Your account may not create hunts (it lacks START_HUNT): " +
        "ask an administrator for the investigator role.")) };
  }
  const launcher = artifactLauncher({ initial: query.getAll("artifact") });
  const limits = limitsForm();
  const description = h("input", { name: "description", maxlength: 2000 });
  const include = h("input", { name: "include_labels", placeholder: "any client" });
  const exclude = h("input", { name: "exclude_labels", placeholder: "none" });
  const os = OSES.map((o) => h("label", { class: "inline" }, h("input", { type: "checkbox", value: o }), o));
  const osGroup = h("div", { class: "multichoice", role: "group", "aria-label": "Operating systems" }, os);
  const clientLimit = h("input", { name: "client_limit", inputmode: "numeric", placeholder: "no limit" });
  const expires = h("input", { name: "expires_hours", inputmode: "decimal", value: "168" });
  const rate = h("input", { name: "rate", inputmode: "decimal", placeholder: "server default" });
  const every = h("input", { name: "every_minutes", inputmode: "decimal", placeholder: "once" });
  const cron = h("input", { name: "cron", class: "mono", placeholder: "e.g. 0 3 * * *" });
  const status = h("div");
  const button = h("button", { type: "submit", class: "primary" }, "Create hunt");

  function number(input, { integer = false, required = false } = {}) {
    const text = input.value.trim();
    let error = "";
    let value;
    if (!text) { if (required) error = "Required."; }
    else if (!Number.isFinite(Number(text)) || Number(text) <= 0) error = "Expects a positive number.";
    else if (integer && !Number.isInteger(Number(text))) error = "Expects a whole number.";
    else value = Number(text);
    setFieldError(input, error);
    return [value, !error];
  }
  const words = (input) => input.value.split(/[\s,]+/).filter(Boolean);

  const form = h("form", { class: "launch", novalidate: true, onsubmit: async (event) => {
    event.preventDefault();
    const artifacts = launcher.values();
    const limitValues = limits.values();
    const [limit, limitOk] = number(clientLimit, { integer: true });
    const [hours, hoursOk] = number(expires, { required: true });
    const [perSecond, rateOk] = number(rate);
    let [minutes, everyOk] = number(every);
    if (everyOk && minutes !== undefined && minutes < 1) {
      setFieldError(every, "At least 1 minute.");
      everyOk = false;
    }
    if (!artifacts || !limitValues || !limitOk || !hoursOk || !rateOk || !everyOk) return;
    button.disabled = true;
    replace(status);
    try {
      const hunt = await post("/hunts", {
        artifacts,
        limits: limitValues,
        description: description.value.trim(),
        include_labels: words(include),
        exclude_labels: words(exclude),
        os: os.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value),
        client_limit: limit ?? null,
        expires_in: hours * 3600,
        notifications_per_second: perSecond ?? null,
        every_seconds: minutes === undefined ? null : minutes * 60,
        cron: cron.value.trim() || null,
      });
      navigate(`/ui/hunts/${hunt.hunt_id}`);
    } catch (exc) {
      if (exc.message.startsWith("cron: ")) {
        setFieldError(cron, exc.message.slice(6));
        cron.focus();
      } else if (!launcher.showServerError(exc.message, { fallback: false })) {
        replace(status, message("error", exc.message));
      }
    } finally {
      button.disabled = false;
    }
  } },
  launcher.node,
  h("fieldset", {}, h("legend", {}, "Hunt"),
    h("div", { class: "grid" },
      field("Description", description, { hint: "what it looks for and why" }),
      field("Expires after (hours)", expires),
      field("Rate (clients a second)", rate, { hint: "how fast connected clients are told" }),
      field("Repeat every (minutes)", every, { hint: "a new run each period; empty: once" }),
      field("Or on a schedule (cron)", cron, { hint: "minute hour day month weekday" }))),
  h("fieldset", {}, h("legend", {}, "Which clients"),
    h("div", { class: "grid" },
      field("Include labels", include, { hint: "all of these, separated by spaces or commas" }),
      field("Exclude labels", exclude, { hint: "none of these" }),
      h("div", { class: "field" }, h("span", { class: "label" }, "Operating systems"), osGroup,
        h("p", { class: "hint" }, "none ticked: any")),
      field("Client limit", clientLimit))),
  limits.node,
  status,
  h("div", { class: "form-actions" }, button, link("/ui/hunts", "Cancel")),
  h("p", { class: "hint" }, "A new hunt is paused: start it from its page."));
  return { node: h("div", { class: "page" }, pageHead("New hunt"), form) };
}
