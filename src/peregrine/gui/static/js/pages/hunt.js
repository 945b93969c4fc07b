// One hunt: controls by state, live statistics (server-sent events), its clients, its results
// across clients with exports.

import { get, post, url, watch } from "../api.js";
import { badge, count, facts, h, link, message, pageHead, replace, section, stat, table, time,
  when } from "../dom.js";
import { pager, resultsTable } from "../components.js";
import { huntAddForm } from "./hunt_add.js";
import { can } from "../session.js";

const CLIENTS_PAGE = 50;
const RESULTS_REFRESH_MS = 3000;
const CONTROLS = {
  Paused: ["start", "stop", "archive"],
  Running: ["pause", "stop"],
  Stopped: ["archive"],
  Archived: [],
};
const FORMAT_LABELS = { csv: "CSV", jsonl: "JSONL", parquet: "Parquet" };
const CONTROL_LABELS = { start: "Start", pause: "Pause", stop: "Stop", archive: "Archive" };

export async function huntPage([huntId]) {
  let hunt = await get(`/hunts/${huntId}`);
  const head = h("div");
  const summary = h("div");
  const stats = h("div", { class: "stats", "aria-live": "polite" });
  const progress = h("div", { class: "progress" });
  const clients = h("div");
  const results = h("div", { class: "results-list" });
  const notes = h("div");
  let clientsOffset = 0;

  function drawHead() {
    const controls = can("START_HUNT") ? (CONTROLS[hunt.state] || []).map((action) =>
      h("button", { type: "button", class: action === "start" ? "primary" : null,
        onclick: () => change(action) }, CONTROL_LABELS[action])) : [];
    replace(head, pageHead(hunt.description || `Hunt ${huntId}`, {
      sub: [h("span", { class: "mono" }, huntId), " · ", badge(hunt.state)],
      actions: controls,
    }));
    replace(summary, facts([
      ["Artifacts", hunt.artifacts.map((a) => a.name).join(", ")],
      ["Include labels", hunt.include_labels.join(", ") || "any"],
      ["Exclude labels", hunt.exclude_labels.join(", ")],
      ["OS", hunt.os.join(", ") || "any"],
      ["Client limit", hunt.client_limit ?? "none"],
      ["Created", `${time(hunt.created)} by ${hunt.creator}`],
      ["Started", time(hunt.started)],
      ["Expires", time(hunt.expires)],
    ]));
  }
  async function change(action) {
    try {
      hunt = await post(`/hunts/${huntId}/${action}`);
      replace(notes, (hunt.warnings || []).map((w) => message("warning", w)));
      drawHead();
      restartWatch();
    } catch (exc) {
      replace(notes, message("error", exc.message));
    }
  }
  function drawStats(s) {
    const done = s.finished + s.errors + s.cancelled;
    replace(stats,
      stat("clients", count(s.scheduled)),
      stat("waiting", count(s.waiting)),
      stat("in progress", count(s.in_progress)),
      stat("finished", count(s.finished), { kind: "good" }),
      stat("with results", count(s.with_results)),
      stat("errors", count(s.errors), { kind: s.errors ? "bad" : null }),
      stat("unresponsive", count(s.unresponsive)),
      stat("rows", count(s.rows)));
    const pct = s.scheduled ? Math.round((100 * done) / s.scheduled) : 0;
    replace(progress,
      h("progress", { max: 100, value: pct, "aria-label": "Clients done" }),
      h("span", {}, `${count(done)} of ${count(s.scheduled)} clients done`));
  }
  async function loadClients(offset = clientsOffset) {
    clientsOffset = offset;
    try {
      const list = await get(`/hunts/${huntId}/clients`, { limit: CLIENTS_PAGE + 1, offset });
      replace(clients, table([
        { label: "Host", cell: (c) => link(`/ui/clients/${c.client_id}`, c.hostname || c.client_id) },
        { label: "Collection", class: "mono", cell: (c) => link(`/ui/collections/${c.flow_id}`, c.flow_id) },
        { label: "State", cell: (c) => badge(c.state) },
        { label: "Scheduled", cell: (c) => when(c.scheduled) },
        { label: "Rows", class: "num", cell: (c) => count(c.rows) },
        { label: "Error", cell: (c) => c.error || "" },
      ], list.slice(0, CLIENTS_PAGE), { empty: "No client has this hunt yet." }),
      list.length > CLIENTS_PAGE || offset
        ? pager({ offset, limit: CLIENTS_PAGE, shown: Math.min(list.length, CLIENTS_PAGE),
          more: list.length > CLIENTS_PAGE, onPage: loadClients, label: "clients" })
        : null);
    } catch (exc) {
      replace(clients, message("error", exc.message));
    }
  }
  async function loadResults() {
    const definitions = await Promise.all(hunt.artifacts.map((a) =>
      get(`/artifacts/${encodeURIComponent(a.name)}`).catch(() => ({ name: a.name, sources: [{}] }))));
    const tables = [];
    for (const definition of definitions) {
      for (const source of definition.sources || [{}]) {
        const name = source.name || "";
        const query = { artifact: definition.name, source: name };
        const t = resultsTable({
          title: `${definition.name}${name ? ` / ${name}` : ""}`,
          fetchPage: (offset, limit, view) =>
            get(`/hunts/${huntId}/results`, { ...query, offset, limit, ...view }),
          sortable: true,
          exports: ["csv", "jsonl", "parquet"].map((format) =>
            [FORMAT_LABELS[format], url(`/hunts/${huntId}/export`, { ...query, format })]),
        });
        t.load(0);
        tables.push(t);
      }
    }
    replace(results, tables.map((t) => t.node));
    return tables;
  }

  let stopWatch = null;
  let tables = [];
  let clientsTimer = null;
  let resultsTimer = null;
  let rowsShown = null;
  function restartWatch() {
    if (stopWatch) stopWatch();
    stopWatch = watch(`/hunts/${huntId}/events`, (data) => {
      const stateChanged = data.state !== hunt.state;
      drawStats(data);
      // The clients and results follow the statistics, but not at every event: counting a
      // hunt's rows reads every client's result set, so results are read again only when
      // the row count moved, and at most every few seconds.
      clearTimeout(clientsTimer);
      clientsTimer = setTimeout(() => loadClients(), 1000);
      if (data.rows !== rowsShown && !resultsTimer) {
        resultsTimer = setTimeout(() => {
          resultsTimer = null;
          rowsShown = data.rows;
          for (const t of tables) t.refresh();
        }, rowsShown === null ? 0 : RESULTS_REFRESH_MS);
      }
      if (stateChanged) {
        get(`/hunts/${huntId}`).then((fresh) => { hunt = fresh; drawHead(); });
      }
    });
  }

  drawHead();
  const initial = await get(`/hunts/${huntId}/stats`);
  drawStats(initial);
  rowsShown = initial.rows;
  await loadClients(0);
  tables = await loadResults();
  restartWatch();
  const node = h("div", { class: "page" },
    head, notes,
    stats, progress,
    h("div", { class: "columns" }, section("Hunt", summary), section("Clients", clients,
      can("START_HUNT") ? huntAddForm(huntId, () => loadClients()) : null)),
    h("h2", { class: "section-title" }, "Results across clients"),
    results);
  return { node, stop: () => {
    if (stopWatch) stopWatch();
    clearTimeout(clientsTimer);
    clearTimeout(resultsTimer);
  } };
}
