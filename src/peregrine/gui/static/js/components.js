// Pieces several pages share: a pager, a result-set table, an artifact launcher form.

import { get } from "./api.js";
import { bytes, count, field, h, message, replace, setFieldError } from "./dom.js";

/**
 * "101–200 of 12,345" with first/previous/next/last buttons; onPage(offset) fetches and
 * redraws. For lists whose size the API does not tell, give `shown` (rows on this page) and
 * `more` (whether another page exists) instead of `total`.
 */
export function pager({ offset, limit, total, shown, more, onPage, label = "rows" }) {
  const known = total !== undefined;
  const end = known ? Math.min(offset + limit, total) : offset + shown;
  const first = end > offset ? offset + 1 : 0;
  const hasNext = known ? end < total : more;
  const range = known ? `${count(first)}–${count(end)} of ${count(total)} ${label}`
    : `${count(first)}–${count(end)} ${label}${more ? ", more on the next pages" : ""}`;
  const buttons = [
    h("span", { class: "pager-range" }, range),
    h("button", { type: "button", disabled: offset <= 0, onclick: () => onPage(0),
      "aria-label": "First page" }, "⇤"),
    h("button", { type: "button", disabled: offset <= 0,
      onclick: () => onPage(Math.max(0, offset - limit)) }, "← Previous"),
    h("button", { type: "button", disabled: !hasNext, onclick: () => onPage(offset + limit) },
      "Next →"),
  ];
  if (known) {
    const last = Math.max(0, Math.floor((total - 1) / limit) * limit);
    const jump = h("input", { type: "number", min: 1, max: Math.max(1, total), value: first || 1,
      class: "jump", "aria-label": `Go to row number (1 to ${total})` });
    buttons.push(
      h("button", { type: "button", disabled: !hasNext, onclick: () => onPage(last),
        "aria-label": "Last page" }, "⇥"),
      h("form", { class: "jump-form", onsubmit: (e) => {
        e.preventDefault();
        const row = Math.min(Math.max(1, Number(jump.value) || 1), Math.max(1, total));
        onPage(Math.floor((row - 1) / limit) * limit);
      } }, jump, h("button", { type: "submit" }, "Go")));
  }
  return h("div", { class: "pager" }, buttons);
}

/**
 * A result set, one page at a time from the server (any page costs the same: the filestore
 * has a row index). fetchPage(offset, limit, view) -> {rows, total}; exports: [[label, href]].
 * With `sortable`, a column's header sorts by it (ascending, descending, stored order) and the
 * row under the headers filters each column; view = {sort, order, filter: ["col:text"]} is
 * then done by the server over the whole result set, never in the browser.
 */
export function resultsTable({ title, fetchPage, exports = [], pageSize = 100, empty = "No rows.",
  sortable = false }) {
  const body = h("div", { class: "results-body" });
  const size = h("select", { "aria-label": "Rows per page", onchange: () => load(0) },
    [50, 100, 500, 1000].map((n) => h("option", { value: n, selected: n === pageSize }, `${n} / page`)));
  const note = h("span", { class: "hint", role: "status" });
  const node = h("section", { class: "panel results" },
    h("div", { class: "results-head" },
      h("h3", {}, title),
      h("div", { class: "actions" }, note, size, exports.length ? h("span", { class: "hint" }, "Export:") : null,
        exports.map(([label, href]) => h("a", { href, class: "button", download: "",
          title: "The whole result set, in its stored order" }, label)))),
    body);
  const view = { sort: null, order: "asc", filters: new Map() };
  let columns = []; // every column seen, so a filter that keeps nothing keeps its headers
  let current = 0;
  let serial = 0;
  async function load(offset) {
    current = offset;
    const limit = Number(size.value);
    const mine = ++serial;
    const query = { sort: view.sort, order: view.sort ? view.order : null,
      filter: [...view.filters].map(([c, t]) => `${c}:${t}`) };
    const filtered = query.filter.length > 0;
    try {
      const page = await fetchPage(offset, limit, query);
      if (mine !== serial) return; // a newer request was made meanwhile
      for (const row of page.rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
      note.textContent = filtered ? `${count(page.total)} rows match the filters` : "";
      if (!page.total && !filtered) {
        replace(body, h("p", { class: "empty" }, empty));
        return;
      }
      const focused = document.activeElement?.dataset?.column;
      replace(body,
        pager({ offset, limit, total: page.total, onPage: load }),
        rowsTable(page.rows, offset, columns, sortable ? { view, apply: () => load(0) } : null));
      const again = focused && body.querySelector(`input[data-column="${CSS.escape(focused)}"]`);
      if (again) {
        again.focus();
        again.setSelectionRange(again.value.length, again.value.length);
      }
    } catch (exc) {
      if (mine === serial) replace(body, message("error", exc.message));
    }
  }
  // refresh(): the page being read again (new rows arrived), not a jump back to the first.
  return { node, load, refresh: () => load(current) };
}

const SORT_NEXT = { none: "ascending", ascending: "descending", descending: "none" };

/** Rows as a table, numbered from offset + 1; with `control`, sortable and filterable headers. */
export function rowsTable(rows, offset, columns, control) {
  const head = [h("th", { scope: "col", class: "rownum" }, "#"), columns.map((c) => {
    if (!control) return h("th", { scope: "col" }, c);
    const { view, apply } = control;
    const state = view.sort !== c ? "none" : (view.order === "desc" ? "descending" : "ascending");
    return h("th", { scope: "col", "aria-sort": state },
      h("button", { type: "button", class: "sort", title: `Sort by ${c} (${SORT_NEXT[state]} next)`,
        onclick: () => {
          const next = SORT_NEXT[state];
          view.sort = next === "none" ? null : c;
          view.order = next === "descending" ? "desc" : "asc";
          apply();
        } }, c, h("span", { class: "sort-mark", "aria-hidden": "true" },
        { none: "", ascending: " ▲", descending: " ▼" }[state])));
  })];
  const filters = control ? h("tr", { class: "filters" }, h("td", { class: "rownum" }),
    columns.map((c) => {
      const input = h("input", { type: "search", value: control.view.filters.get(c) || "",
        placeholder: "filter", "aria-label": `Filter ${c}`, dataset: { column: c },
        title: "Text the value contains (any case), or >10, <=2.5, =x, !=x" });
      let timer = null;
      const set = () => {
        clearTimeout(timer);
        const text = input.value.trim();
        if ((control.view.filters.get(c) || "") === text) return;
        if (text) control.view.filters.set(c, text);
        else control.view.filters.delete(c);
        control.apply();
      };
      input.addEventListener("keydown", (e) => { if (e.key === "Enter") set(); });
      input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(set, 600); });
      return h("td", {}, input);
    })) : null;
  const body = rows.length
    ? rows.map((row, i) => h("tr", {},
      h("td", { class: "rownum" }, count(offset + i + 1)),
      columns.map((c) => h("td", {}, cell(row[c])))))
    : [h("tr", {}, h("td", { colspan: columns.length + 1, class: "empty" }, "No row matches the filters."))];
  return h("div", { class: "table-wrap" }, h("table", { class: "rows" },
    h("thead", {}, h("tr", {}, head), filters),
    h("tbody", {}, body)));
}

function cell(value) {
  if (value === null || value === undefined) return h("span", { class: "null" }, "null");
  if (typeof value === "object") {
    const text = JSON.stringify(value);
    if (text.length <= 80) return h("code", {}, text);
    return h("details", { class: "json" }, h("summary", {}, h("code", {}, `${text.slice(0, 60)}…`)),
      h("pre", {}, JSON.stringify(value, null, 2)));
  }
  if (typeof value === "number") return h("span", { class: "num" }, String(value));
  const text = String(value);
  if (text.length > 300) {
    return h("details", {}, h("summary", {}, `${text.slice(0, 120)}…`), h("pre", {}, text));
  }
  return text;
}

// -- launching artifacts (a collection or a hunt) ------------------------------------------

/**
 * Pick artifacts (searchable) and fill in each one's typed parameters. values() returns the
 * request's `artifacts` list, or null after marking the fields that are wrong;
 * showServerError(detail) puts the API's refusal next to the field it names. `type` is the
 * artifact type offered (CLIENT for collections and hunts, CLIENT_EVENT for assignments).
 */
export function artifactLauncher({ initial = [], type = "CLIENT" } = {}) {
  const chosen = new Map(); // name -> {definition, inputs: Map(param -> input), node}
  const list = h("div", { class: "chosen" });
  const search = h("input", { type: "search", placeholder: "Search artifacts by name or description",
    "aria-label": "Search artifacts", autocomplete: "off" });
  const suggestions = h("ul", { class: "suggestions", role: "listbox", "aria-label": "Artifacts" });
  const empty = h("p", { class: "hint" }, "No artifact chosen yet.");
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(suggest, 150);
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      suggestions.querySelector("button")?.focus();
    }
  });
  async function suggest() {
    const text = search.value.trim();
    if (!text) { replace(suggestions); return; }
    const found = await get("/artifacts", { search: text });
    replace(suggestions, found.filter((a) => a.type === type).slice(0, 12).map((a) =>
      h("li", {}, h("button", { type: "button", class: "suggestion", onclick: () => add(a.name),
        onkeydown: (e) => move(e) },
      h("strong", {}, a.name), h("span", {}, a.summary)))));
    if (!suggestions.children.length) {
      replace(suggestions, h("li", { class: "hint" }, `No ${type.toLowerCase().replace("_", " ")} artifact matches.`));
    }
  }
  function move(event) {
    const li = event.target.closest("li");
    if (event.key === "ArrowDown") li.nextElementSibling?.querySelector("button")?.focus();
    else if (event.key === "ArrowUp") (li.previousElementSibling?.querySelector("button") || search).focus();
    else return;
    event.preventDefault();
  }
  async function add(name) {
    if (chosen.has(name)) return;
    const definition = await get(`/artifacts/${encodeURIComponent(name)}`);
    const inputs = new Map();
    const fields = (definition.parameters || []).filter((p) => p.type !== "hidden")
      .map((p) => parameterField(name, p, inputs));
    const node = h("fieldset", { class: "artifact-params", dataset: { artifact: name } },
      h("legend", {}, name,
        h("button", { type: "button", class: "link-button", "aria-label": `Remove ${name}`,
          onclick: () => { chosen.delete(name); node.remove(); empty.hidden = chosen.size > 0; } },
        "remove")),
      h("p", { class: "hint" }, definition.description || ""),
      fields.length ? fields : h("p", { class: "hint" }, "No parameters."));
    chosen.set(name, { definition, inputs, node });
    list.append(node);
    empty.hidden = true;
    search.value = "";
    replace(suggestions);
    node.querySelector("input, select, textarea")?.focus();
  }
  for (const name of initial) add(name);
  const general = h("p", { class: "field-error", role: "alert" });
  const node = h("div", { class: "launcher" },
    h("div", { class: "picker" }, h("label", {}, "Artifacts", search), suggestions),
    empty, list, general);

  function values() {
    general.textContent = "";
    if (!chosen.size) {
      general.textContent = "Choose at least one artifact.";
      search.focus();
      return null;
    }
    let ok = true;
    const out = [];
    for (const [name, { definition, inputs }] of chosen) {
      const parameters = {};
      for (const p of definition.parameters || []) {
        const input = inputs.get(p.name);
        if (!input) continue;
        const [value, error] = readParameter(p, input);
        setFieldError(input.focusTarget || input, error);
        if (error) ok = false;
        else if (value !== undefined) parameters[p.name] = value;
      }
      out.push({ name, parameters });
    }
    if (!ok) node.querySelector("[aria-invalid=true]")?.focus();
    return ok ? out : null;
  }

  /** Put the API's refusal by the field it names; true if it named one. Otherwise it is
   *  shown under the artifacts, unless `fallback` is false (the caller shows it). */
  function showServerError(detail, { fallback = true } = {}) {
    // "Artifact.Name: parameter N (int) expects an integer, got 'x'"
    const m = /^(\S+): parameter (\S+) /.exec(detail);
    const input = m && chosen.get(m[1])?.inputs.get(m[2]);
    if (input) {
      setFieldError(input.focusTarget || input, detail.slice(m[1].length + 2));
      (input.focusTarget || input).focus();
      return true;
    }
    if (fallback) general.textContent = detail;
    return false;
  }
  return { node, values, showServerError, add };
}

const TYPE_HINTS = {
  int: "a whole number",
  float: "a number",
  timestamp: "seconds since 1970 or ISO 8601, e.g. 2024-05-01T12:00:00Z",
  regex: "a regular expression",
  list: "comma-separated values",
  csv: "comma-separated values",
  json: "JSON",
  yara: "a YARA rule",
};

function parameterField(artifact, p, inputs) {
  const id = `p-${artifact}-${p.name}`.replace(/[^A-Za-z0-9_-]/g, "_");
  let input;
  if (p.type === "bool") {
    input = h("input", { type: "checkbox", id, checked: truthy(p.default) });
  } else if (p.type === "choices") {
    input = h("select", { id }, (p.required || p.default != null ? [] : [h("option", { value: "" }, "(none)")])
      .concat((p.choices || []).map((c) => h("option", { value: c, selected: c === p.default }, c))));
  } else if (p.type === "multichoice") {
    const chosenDefault = Array.isArray(p.default) ? p.default : [];
    const boxes = (p.choices || []).map((c) => h("label", { class: "inline" },
      h("input", { type: "checkbox", value: c, checked: chosenDefault.includes(c) }), c));
    input = h("div", { id, class: "multichoice", role: "group" }, boxes);
    input.focusTarget = input;
  } else if (p.type === "json" || p.type === "yara") {
    input = h("textarea", { id, rows: 4, class: "mono" });
    input.value = p.default == null ? "" : (typeof p.default === "string" ? p.default : JSON.stringify(p.default, null, 2));
  } else {
    input = h("input", { id, type: p.type === "int" || p.type === "float" ? "text" : "text",
      inputmode: p.type === "int" ? "numeric" : (p.type === "float" ? "decimal" : null),
      value: p.default == null ? "" : (Array.isArray(p.default) ? p.default.join(", ") : String(p.default)) });
  }
  input.name = p.name;
  input.dataset.type = p.type;
  inputs.set(p.name, input);
  const label = h("span", {}, p.name, p.required ? h("span", { class: "required", "aria-label": "required" }, " *") : null);
  const hint = [p.description, TYPE_HINTS[p.type] ? `(${TYPE_HINTS[p.type]})` : ""].filter(Boolean).join(" ");
  return field(label, input, { hint, id });
}

function truthy(value) {
  return value === true || ["1", "true", "yes", "y", "on", "t"].includes(String(value).toLowerCase());
}

/** [value to send or undefined for "use the default", error text or ""]. */
function readParameter(p, input) {
  if (p.type === "bool") return [input.checked, ""];
  if (p.type === "multichoice") {
    return [[...input.querySelectorAll("input:checked")].map((i) => i.value), ""];
  }
  const text = input.value.trim();
  if (!text) return p.required ? [undefined, "Required."] : [undefined, ""];
  if (p.type === "int" && !/^[-+]?(\d+|0x[0-9a-f]+)$/i.test(text)) return [undefined, "Expects a whole number."];
  if (p.type === "float" && !Number.isFinite(Number(text))) return [undefined, "Expects a number."];
  if (p.type === "json") {
    try { JSON.parse(text); } catch (exc) { return [undefined, `Not valid JSON: ${exc.message}`]; }
  }
  return [p.type === "int" ? Number(text) : text, ""];
}

/** Optional resource limits; values() -> the request's `limits` or null when one is wrong. */
export function limitsForm() {
  const specs = [
    ["timeout", "Time-out (seconds)", "float"],
    ["max_rows", "Most rows", "int"],
    ["max_upload_bytes", "Most upload bytes", "int"],
    ["cpu_limit", "CPU limit (%)", "float"],
  ];
  const inputs = specs.map(([name, label]) => [name, h("input", { name, inputmode: "decimal",
    placeholder: "artifact's default" }), label]);
  const node = h("details", { class: "limits" }, h("summary", {}, "Resource limits"),
    h("div", { class: "grid" }, inputs.map(([, input, label]) => field(label, input))));
  function values() {
    const out = {};
    let ok = true;
    for (const [i, [name, input]] of inputs.entries()) {
      const text = input.value.trim();
      let error = "";
      if (text) {
        const n = Number(text);
        if (!Number.isFinite(n) || n <= 0) error = "Expects a positive number.";
        else if (specs[i][2] === "int" && !Number.isInteger(n)) error = "Expects a whole number.";
        else out[name] = n;
      }
      setFieldError(input, error);
      if (error) { ok = false; node.open = true; }
    }
    return ok ? out : null;
  }
  return { node, values };
}

export { bytes };
