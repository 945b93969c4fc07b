// Notebooks: the list, and one notebook with each cell's stored result (opening one reruns
// nothing); a SQL cell is rerun on request, and Markdown or SQL cells are added at the end.

import { get, post } from "../api.js";
import { count, h, link, message, pageHead, replace, section, table, when } from "../dom.js";
import { pager, resultsTable, rowsTable } from "../components.js";
import { barChart, lineChart } from "../chart.js";
import { navigate } from "../router.js";
import { can } from "../session.js";

const PAGE = 50;

export async function notebooksPage(_params, query) {
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const found = await get("/notebooks", { limit: PAGE, offset });
  const node = h("div", { class: "page" },
    pageHead("Notebooks", { sub: "SQL over everything collected, with each cell's last result kept." }),
    can("ANALYZE") ? newNotebookForm() : null,
    table([
      { label: "Notebook", cell: (n) => link(`/ui/notebooks/${n.notebook_id}`, n.title) },
      { label: "Owner", cell: (n) => n.owner },
      { label: "Shared", cell: (n) => (n.shared ? "yes" : "no") },
      { label: "About", cell: (n) => n.hunt_id ? link(`/ui/hunts/${n.hunt_id}`, n.hunt_id)
        : (n.client_id ? link(`/ui/clients/${n.client_id}`, n.client_id) : "—") },
      { label: "Changed", cell: (n) => when(n.modified) },
    ], found.items, { empty: "No notebook yet." }),
    pager({ offset, limit: PAGE, total: found.total, label: "notebooks",
      onPage: (o) => navigate(`/ui/notebooks?offset=${o}`) }));
  return { node };
}

function newNotebookForm() {
  const title = h("input", { name: "title", "aria-label": "New notebook title", required: true,
    maxlength: 200, placeholder: "title of a new notebook" });
  const status = h("div");
  return h("form", { class: "inline-form", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const made = await post("/notebooks", { title: title.value.trim() });
      navigate(`/ui/notebooks/${made.notebook_id}`);
    } catch (exc) {
      replace(status, message("error", exc.message));
    }
  } }, title, h("button", { type: "submit", class: "primary" }, "New notebook"), status);
}

export async function notebookPage([notebookId]) {
  const notebook = await get(`/notebooks/${notebookId}`);
  const base = `/api/v1/notebooks/${notebookId}/export`;
  const cells = h("div", { class: "cells" });
  const editable = can("ANALYZE");
  const redraw = (cell, node) => node.replaceWith(cellView(notebookId, cell, editable, redraw));
  for (const cell of notebook.cells) cells.append(cellView(notebookId, cell, editable, redraw));
  const node = h("div", { class: "page" },
    pageHead(notebook.title, {
      sub: [notebook.description, notebook.description ? " · " : "", `by ${notebook.owner}`,
        notebook.hunt_id ? [" · about ", link(`/ui/hunts/${notebook.hunt_id}`, notebook.hunt_id)] : null,
        notebook.client_id ? [" · about ", link(`/ui/clients/${notebook.client_id}`, notebook.client_id)] : null],
      actions: [
        h("a", { href: `${base}?format=html`, class: "button", download: "" }, "Export HTML"),
        h("a", { href: `${base}?format=json`, class: "button", download: "" }, "Export JSON"),
      ],
    }),
    notebook.cells.length ? null : h("p", { class: "empty" }, "No cells yet."),
    cells,
    editable ? addCellForm(notebookId, (cell) => cells.append(cellView(notebookId, cell, editable, redraw))) : null);
  return { node };
}

function cellView(notebookId, cell, editable, redraw) {
  if (cell.kind === "markdown") {
    return h("section", { class: "panel cell cell-markdown", dataset: { cell: cell.cell_id } },
      markdown(cell.text));
  }
  const status = h("div", { "aria-live": "polite" });
  const node = h("section", { class: "panel cell cell-sql", dataset: { cell: cell.cell_id } },
    h("div", { class: "results-head" },
      h("h3", {}, "SQL"),
      h("div", { class: "actions" },
        h("span", { class: "hint" }, cell.ran
          ? ["ran ", when(cell.ran), cell.ran_by ? ` by ${cell.ran_by}` : "",
            cell.duration != null ? ` in ${cell.duration.toFixed(2)} s` : ""]
          : "not run yet"),
        editable ? h("button", { type: "button", onclick: async (e) => {
          e.target.disabled = true;
          replace(status, h("p", { class: "loading" }, "Running…"));
          try {
            const ran = await post(`/notebooks/${notebookId}/run`, { cells: [cell.cell_id] });
            redraw(ran.cells[0], node);
          } catch (exc) {
            e.target.disabled = false;
            replace(status, message("error", exc.message));
          }
        } }, cell.ran ? "Rerun" : "Run") : null)),
    h("pre", { class: "sql" }, cell.text),
    status,
    cell.result ? resultView(notebookId, cell) : null);
  return node;
}

function resultView(notebookId, cell) {
  const result = cell.result;
  if (result.error) return message("error", result.error);
  const chart = cell.chart || { type: "table" };
  const rows = named(result.columns, result.rows);
  const drawn = !(chart.x && chart.y) ? null
    : (chart.type === "bar" ? barChart(rows, chart.x, chart.y)
      : (chart.type === "line" ? lineChart(rows, chart.x, chart.y) : null));
  const note = result.more
    ? h("p", { class: "hint" }, `The query had more rows than the ${count(result.stored_rows)} kept.`)
    : null;
  if (result.stored_rows > result.rows.length) return [drawn, storedPages(notebookId, cell), note];
  return [
    drawn,
    rows.length ? rowsTable(rows, 0, result.columns, null)
      : h("p", { class: "empty" }, "No rows."),
    note,
  ];
}

/** Stored rows are lists in the order of the columns. */
function named(columns, rows) {
  return rows.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]])));
}

/** A stored result longer than the notebook's answer carries, a page at a time. */
function storedPages(notebookId, cell) {
  const shown = resultsTable({ title: "Stored result", fetchPage: async (offset, limit) => {
    const page = await get(`/notebooks/${notebookId}/cells/${cell.cell_id}/result`, { offset, limit });
    return { rows: named(page.columns, page.rows), total: page.stored_rows };
  } });
  shown.load(0);
  return shown.node;
}

/** Markdown as text: headings and paragraphs only, never as HTML (a cell cannot inject). */
function markdown(text) {
  return h("div", { class: "prose" }, text.split(/\n{2,}/).map((block) => {
    const heading = /^(#{1,4})\s+(.*)$/.exec(block.trim());
    if (heading) return h(`h${Math.min(4, heading[1].length + 1)}`, {}, heading[2]);
    return h("p", {}, block);
  }));
}

function addCellForm(notebookId, added) {
  const kind = h("select", { name: "kind", "aria-label": "Cell kind" },
    h("option", { value: "sql" }, "SQL"), h("option", { value: "markdown" }, "Markdown"));
  const text = h("textarea", { name: "text", rows: 6, class: "mono cell-text", "aria-label": "Cell text",
    placeholder: "SELECT … FROM clients()" });
  const status = h("div");
  return section("Add a cell", h("form", { onsubmit: async (e) => {
    e.preventDefault();
    try {
      let cell = await post(`/notebooks/${notebookId}/cells`, { kind: kind.value, text: text.value });
      if (cell.kind === "sql") {
        cell = (await post(`/notebooks/${notebookId}/run`, { cells: [cell.cell_id] })).cells[0];
      }
      added(cell);
      text.value = "";
      replace(status);
    } catch (exc) {
      replace(status, message("error", exc.message));
    }
  } }, h("div", { class: "inline-form" }, kind), text,
  h("div", { class: "form-actions" }, h("button", { type: "submit", class: "primary" }, "Add cell")),
  status));
}
