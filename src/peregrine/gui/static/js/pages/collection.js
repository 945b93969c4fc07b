// One collection: live state (server-sent events), then its results, uploads and log.

import { get, post, url, watch } from "../api.js";
import { badge, bytes, count, facts, h, link, message, pageHead, replace, section, table, time }
  from "../dom.js";
import { resultsTable } from "../components.js";
import { can } from "../session.js";

const FINAL = new Set(["Finished", "Error", "Cancelled"]);

export async function collectionPage([flowId]) {
  let flow = await get(`/collections/${flowId}`);
  const client = await get(`/clients/${flow.client_id}`).catch(() => null);
  const summary = h("div");
  const state = h("span");
  const actions = h("div", { class: "actions" });
  const results = h("div", { class: "results-list" });
  const uploads = h("div");
  const logs = h("div");
  let shownResults = false;

  function draw() {
    replace(state, badge(flow.state));
    replace(summary, facts({ wide: true }, [
      ["State", [badge(flow.state), flow.error ? h("span", { class: "error-text" }, ` ${flow.error}`) : null]],
      ["Artifacts", flow.artifacts.map((a) => `${a.name}${paramsText(a.parameters)}`).join("; ")],
      ["Created", `${time(flow.created)} by ${flow.creator}`],
      ["Started", time(flow.started)],
      ["Finished", time(flow.finished)],
      ["Rows", count(flow.rows)],
      ["Uploads", `${count(flow.uploads)} (${bytes(flow.upload_bytes)})`],
      ["Warnings", flow.warnings ? h("span", { class: "warn" },
        `${count(flow.warnings)}: the log says which (the results may be incomplete)`) : "none"],
      ["Hunt", flow.hunt_id ? link(`/ui/hunts/${flow.hunt_id}`, flow.hunt_id) : null],
    ]));
    replace(actions, can("COLLECT_CLIENT") && !FINAL.has(flow.state)
      ? h("button", { type: "button", onclick: cancel }, "Cancel collection") : null);
    if (FINAL.has(flow.state) && !shownResults) {
      shownResults = true;
      showResults();
    }
  }
  async function cancel() {
    try {
      flow = await post(`/collections/${flowId}/cancel`);
      draw();
    } catch (exc) {
      actions.append(message("error", exc.message));
    }
  }
  function showResults() {
    const sources = Object.keys(flow.sources).sort();
    replace(results, sources.length ? sources.map((key) => {
      const [artifact, source] = splitSource(key);
      const info = flow.sources[key];
      const table = resultsTable({
        title: `${artifact}${source ? ` / ${source}` : ""}${info.status ? ` · ${info.status}` : ""}`,
        fetchPage: (offset, limit, view) => get(`/collections/${flowId}/results`,
          { artifact, source, offset, limit, ...view }),
        sortable: true,
        exports: [["csv", "CSV"], ["jsonl", "JSONL"], ["parquet", "Parquet"]].map(([format, label]) =>
          [label, url(`/collections/${flowId}/export`, { artifact, source, format })]),
      });
      table.load(0);
      return table.node;
    }) : message("info", "This collection returned no result sets."));
    get(`/collections/${flowId}/uploads`).then((list) => replace(uploads, uploadsTable(flowId, list)),
      (exc) => replace(uploads, message("error", exc.message)));
    const log = resultsTable({ title: "Log", pageSize: 50, empty: "Nothing was logged.",
      fetchPage: (offset, limit) => get(`/collections/${flowId}/logs`, { offset, limit }) });
    log.load(0);
    replace(logs, log.node);
  }

  draw();
  let stop = null;
  if (!FINAL.has(flow.state)) {
    replace(results, h("p", { class: "loading" }, "Waiting for the collection to finish…"));
    stop = watch(`/collections/${flowId}/events`, (data) => {
      flow = data;
      draw();
    }, async () => { // stream ended: read the final state once more
      flow = await get(`/collections/${flowId}`);
      draw();
    });
  }
  const node = h("div", { class: "page" },
    pageHead(`Collection ${flowId}`, {
      sub: ["on ", link(`/ui/clients/${flow.client_id}`, client?.hostname || flow.client_id), " · ", state],
      actions,
    }),
    section("Summary", summary),
    results,
    section("Uploaded files", uploads),
    logs);
  return { node, stop: () => stop && stop() };
}

function splitSource(key) {
  const at = key.indexOf("/");
  return at < 0 ? [key, ""] : [key.slice(0, at), key.slice(at + 1)];
}

function paramsText(parameters) {
  const entries = Object.entries(parameters || {});
  return entries.length ? ` (${entries.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")})` : "";
}

function uploadsTable(flowId, uploads) {
  return table([
    { label: "Path", class: "mono", cell: (u) => u.path },
    { label: "Size", class: "num", cell: (u) => bytes(u.size) },
    { label: "SHA-256", class: "mono hash", cell: (u) => u.sha256 },
    { label: "", cell: (u) => h("a", { href: url(`/collections/${flowId}/uploads/${u.upload_id}`),
      download: "", class: "button" }, "Download") },
  ], uploads, { empty: "No files were uploaded." });
}
