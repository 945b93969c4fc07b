// Alerts raised by rules: filtered by state, severity and client, acknowledged with a comment
// by those allowed to, with the rules that raise them below; the list is read again when events arrive (the follow stream) and on a
// timer, since an alert is raised a moment after the event that matched.

import { get, post, watch } from "../api.js";
import { badge, h, link, message, pageHead, replace, section, table, when } from "../dom.js";
import { navigate } from "../router.js";
import { can } from "../session.js";

const PAGE = 100;
const STATES = [["open", "Open"], ["acknowledged", "Acknowledged"], ["", "All states"]];
const SEVERITIES = ["critical", "high", "medium", "low", "info"];
const REFRESH_MS = 10_000;
const AFTER_EVENT_MS = 1_500;

export async function alertsPage(_params, query) {
  const filters = {
    state: query.has("state") ? query.get("state") : "open",
    severity: query.get("severity") || "",
    client_id: query.get("client_id") || "",
    before: query.get("before") || "",
  };
  const go = (changes) => {
    const next = { ...filters, before: "", ...changes };
    navigate(`/ui/alerts?${new URLSearchParams(next)}`);
  };
  const list = h("div");
  const status = h("div", { "aria-live": "polite" });
  const comments = new Map(); // alert id -> its comment box, kept across redraws
  let shown = "";

  async function refresh() {
    const alerts = await get("/alerts", {
      state: filters.state, severity: filters.severity, client_id: filters.client_id,
      before: filters.before, limit: PAGE,
    });
    const signature = alerts.map((a) => `${a.alert_id}:${a.state}`).join(",");
    if (signature === shown) return;
    shown = signature;
    replace(list, alertsTable(alerts, comments, acknowledge),
      alerts.length === PAGE ? h("button", { type: "button",
        onclick: () => go({ before: alerts[alerts.length - 1].alert_id }) }, "Older alerts →")
        : null);
  }
  async function acknowledge(alert, box) {
    try {
      await post(`/alerts/${alert.alert_id}/acknowledge`, { comment: box.value.trim() });
      comments.delete(alert.alert_id);
      replace(status, message("info", `Alert ${alert.alert_id} acknowledged.`));
      await refresh();
    } catch (exc) {
      replace(status, message("error", exc.message));
    }
  }
  const quietly = () => refresh().catch((exc) => replace(status, message("error", exc.message)));
  const [rules] = await Promise.all([get("/rules"), refresh()]);

  let pending = null;
  const stopFollow = watch("/events/follow", () => {
    clearTimeout(pending);
    pending = setTimeout(quietly, AFTER_EVENT_MS);
  });
  const timer = setInterval(quietly, REFRESH_MS);
  const node = h("div", { class: "page" },
    pageHead("Alerts", { sub: "Raised by rules over incoming events; new ones appear as they come.",
      actions: filterForm(filters, go) }),
    status, list, section("Rules", rulesTable(rules)));
  return { node, stop: () => { stopFollow(); clearInterval(timer); clearTimeout(pending); } };
}

function filterForm(filters, go) {
  const state = h("select", { "aria-label": "State", onchange: () => go({ state: state.value }) },
    STATES.map(([value, label]) => h("option", { value, selected: value === filters.state }, label)));
  const severity = h("select", { "aria-label": "Severity",
    onchange: () => go({ severity: severity.value }) },
  h("option", { value: "" }, "Any severity"),
  SEVERITIES.map((s) => h("option", { value: s, selected: s === filters.severity }, s)));
  const client = h("input", { type: "search", "aria-label": "Client id", placeholder: "C.… client id",
    value: filters.client_id, pattern: "C\\.[0-9a-f]{16}", title: "C. and 16 hex digits" });
  return [state, severity, h("form", { class: "inline-form", onsubmit: (e) => {
    e.preventDefault();
    if (client.reportValidity()) go({ client_id: client.value.trim() });
  } }, client, h("button", { type: "submit" }, "Filter"))];
}

function alertsTable(alerts, comments, acknowledge) {
  const columns = [
    { label: "Alert", class: "num", cell: (a) => String(a.alert_id) },
    { label: "Raised", cell: (a) => when(a.time) },
    { label: "Severity", cell: (a) => badge(a.severity) },
    { label: "Rule", class: "mono", cell: (a) => a.rule_id },
    { label: "Summary", cell: (a) => [a.summary, a.rows.length ? h("details", { class: "json" },
      h("summary", {}, a.rows.length === 1 ? "the event" : `${a.rows.length} events`),
      h("pre", {}, JSON.stringify(a.rows, null, 2))) : null] },
    { label: "Client", cell: (a) => a.client_id
      ? link(`/ui/clients/${a.client_id}`, a.hostname || a.client_id) : "—" },
    { label: "State", cell: (a) => badge(a.state) },
    { label: "Acknowledged", cell: (a) => a.state === "acknowledged"
      ? [`${a.acked_by}, `, when(a.acked_at), a.ack_comment ? `: ${a.ack_comment}` : ""] : "—" },
  ];
  if (can("ACKNOWLEDGE_ALERTS")) {
    columns.push({ label: "Action", cell: (a) => a.state === "open"
      ? acknowledgeForm(a, comments, acknowledge) : null });
  }
  return table(columns, alerts, { empty: "No alert matches." });
}

function acknowledgeForm(alert, comments, acknowledge) {
  if (!comments.has(alert.alert_id)) {
    comments.set(alert.alert_id, h("input", { name: "comment", maxlength: 4000,
      placeholder: "why, what was done", "aria-label": `Comment on alert ${alert.alert_id}` }));
  }
  const box = comments.get(alert.alert_id);
  return h("form", { class: "inline-form", onsubmit: (e) => {
    e.preventDefault();
    acknowledge(alert, box);
  } }, box, h("button", { type: "submit", "aria-label": `Acknowledge alert ${alert.alert_id}` },
    "Acknowledge"));
}

function rulesTable(rules) {
  return table([
    { label: "Rule", class: "mono", cell: (r) => r.rule_id },
    { label: "Severity", cell: (r) => badge(r.severity) },
    { label: "On", cell: (r) => r.enabled ? "enabled" : "disabled" },
    { label: "Artifacts", class: "mono", cell: (r) => r.artifacts.join(", ") },
    { label: "Condition", cell: (r) => [h("code", {}, r.condition), r.window
      ? ` · ${r.window.threshold} within ${r.window.seconds} s` : ""] },
    { label: "Description", cell: (r) => r.description },
    { label: "Version", class: "num", cell: (r) => `${r.version}${r.builtin ? " (built-in)" : ""}` },
  ], rules, { empty: "No rule: an administrator adds them (peregrine rules add, or POST /api/v1/rules)." });
}
