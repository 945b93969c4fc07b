// Event monitoring: which event artifacts run where (assign to all clients or by label, with
// parameters; unassign), how they run on each client, and a client's recent rows by time.

import { del, get, post } from "../api.js";
import { badge, chips, h, link, message, pageHead, replace, section, table, when } from "../dom.js";
import { artifactLauncher, pager, rowsTable } from "../components.js";
import { can } from "../session.js";

const ROWS = 100;
const DAY = 86400;

export async function eventsPage(_params, query) {
  const [assigned, statuses] = await Promise.all([
    get("/events/assignments"), get("/events/status", { limit: 1000 }),
  ]);
  const status = h("div", { "aria-live": "polite" });
  const assignments = h("div");
  const recent = recentRows(query);
  function drawAssignments(set) {
    replace(assignments, assignmentsTable(set.assignments, unassign),
      h("p", { class: "hint" }, `Assignments version ${set.version}.`));
    recent.offer(set.assignments.map((a) => a.artifact));
  }
  async function unassign(artifact) {
    try {
      drawAssignments(await del(`/events/assignments/${encodeURIComponent(artifact)}`));
      replace(status, message("info", `${artifact} stopped on every client.`));
    } catch (exc) {
      replace(status, message("error", exc.message));
    }
  }
  drawAssignments(assigned);
  const node = h("div", { class: "page" },
    pageHead("Event monitoring", { sub: "Event artifacts run continuously on the clients they are assigned to." }),
    status,
    section("Assignments", assignments),
    can("START_HUNT") ? section("Assign an event artifact", assignForm(drawAssignments, status)) : null,
    section("Status on each client", statusTable(statuses, recent.showFor)),
    section("Recent events", recent.node));
  return { node };
}

function assignmentsTable(assignments, unassign) {
  const columns = [
    { label: "Artifact", class: "mono", cell: (a) => a.artifact },
    { label: "Clients", cell: (a) => a.labels.length ? ["labelled ", chips(a.labels)] : "all" },
    { label: "Parameters", class: "params", cell: (a) => Object.keys(a.parameters).length
      ? h("code", {}, JSON.stringify(a.parameters)) : "defaults" },
    { label: "Version", class: "num", cell: (a) => String(a.version) },
    { label: "Changed", cell: (a) => [a.modified_by, ", ", when(a.modified)] },
  ];
  if (can("START_HUNT")) {
    columns.push({ label: "", cell: (a) => h("button", { type: "button",
      "aria-label": `Unassign ${a.artifact}`, onclick: () => unassign(a.artifact) }, "Unassign") });
  }
  return table(columns, assignments, { empty: "No event artifact is assigned." });
}

function assignForm(drawAssignments, status) {
  const launcher = artifactLauncher({ type: "CLIENT_EVENT" });
  const labels = h("input", { name: "labels", placeholder: "empty: every client",
    "aria-label": "Labels (comma-separated)" });
  return h("form", { class: "launch", onsubmit: async (e) => {
    e.preventDefault();
    const chosen = launcher.values();
    if (!chosen) return;
    const wanted = labels.value.split(",").map((l) => l.trim()).filter(Boolean);
    try {
      for (const { name, parameters } of chosen) {
        drawAssignments(await post("/events/assignments", { artifact: name, parameters, labels: wanted }));
      }
      replace(status, message("info", `Assigned ${chosen.map((c) => c.name).join(", ")} to ${
        wanted.length ? `clients labelled ${wanted.join(", ")}` : "every client"}.`));
    } catch (exc) {
      if (!launcher.showServerError(exc.message, { fallback: false })) {
        replace(status, message("error", exc.message));
      }
    }
  } },
  launcher.node,
  h("label", {}, "Labels (comma-separated)", labels),
  h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary" }, "Assign")));
}

function statusTable(statuses, showFor) {
  return table([
    { label: "Client", class: "mono", cell: (s) => link(`/ui/clients/${s.client_id}`, s.client_id) },
    { label: "Artifact", class: "mono", cell: (s) => s.artifact },
    { label: "State", cell: (s) => badge(s.state) },
    { label: "Restarts", class: "num", cell: (s) => String(s.restarts) },
    { label: "Error", cell: (s) => s.error || "—" },
    { label: "Reported", cell: (s) => when(s.reported) },
    { label: "", cell: (s) => h("button", { type: "button", class: "link-button",
      "aria-label": `Events of ${s.artifact} on ${s.client_id}`,
      onclick: () => showFor(s.client_id, s.artifact) }, "events") },
  ], statuses, { empty: "No client has reported an event artifact yet." });
}

/** A client's rows of one artifact in a time range, a page at a time (oldest first). */
function recentRows(query) {
  const client = h("input", { name: "client", "aria-label": "Client id", placeholder: "C.…",
    value: query.get("client_id") || "", required: true, pattern: "C\\.[0-9a-f]{16}",
    title: "C. and 16 hex digits" });
  const artifact = h("select", { name: "artifact", "aria-label": "Event artifact", required: true });
  const none = h("p", { class: "hint" }, "Assign an event artifact to read its events.");
  const hours = h("select", { "aria-label": "Time range" },
    [[1, "last hour"], [24, "last day"], [168, "last week"]].map(([n, label]) =>
      h("option", { value: n, selected: n === 24 }, label)));
  const out = h("div");
  async function show(offset) {
    const end = Date.now() / 1000;
    const start = end - Number(hours.value) * 3600;
    const path = `/events/clients/${client.value.trim()}/${encodeURIComponent(artifact.value)}`;
    try {
      // One row more than a page says whether a next page exists (the API has no total).
      const page = await get(path, { start, end: end + DAY, offset, limit: ROWS + 1 });
      const rows = page.rows.slice(0, ROWS);
      const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
      replace(out, rows.length ? [
        pager({ offset, limit: ROWS, shown: rows.length, more: page.rows.length > ROWS, onPage: show }),
        rowsTable(rows, offset, columns, null),
      ] : h("p", { class: "empty" }, "No events in this range."));
    } catch (exc) {
      replace(out, message("error", exc.message));
    }
  }
  /** The artifacts to choose from: those assigned, and any one a status row names. */
  function offer(names) {
    const chosen = artifact.value;
    replace(artifact, names.map((n) => h("option", { value: n, selected: n === chosen }, n)));
    none.hidden = names.length > 0;
  }
  function showFor(clientId, name) {
    client.value = clientId;
    if (![...artifact.options].some((o) => o.value === name)) artifact.append(h("option", { value: name }, name));
    artifact.value = name;
    show(0);
    client.scrollIntoView({ block: "start" });
  }
  const node = [
    none,
    h("form", { class: "inline-form", onsubmit: (e) => { e.preventDefault(); show(0); } },
      client, artifact, hours, h("button", { type: "submit" }, "Show events")),
    out,
  ];
  return { node, showFor, offer };
}
