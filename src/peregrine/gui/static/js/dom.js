// Building the page: h() makes elements from data. Text always goes in as text nodes, never
// as HTML, so a hostname or a result cell cannot inject markup.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function time(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(seconds) {
  if (!seconds) return "never";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function count(n) {
  return (n ?? 0).toLocaleString("en-US");
}

// A <time> element: exact time on hover, relative in the text.
export function when(seconds) {
  return h("time", { title: time(seconds) }, seconds ? ago(seconds) : "—");
}

export function badge(state) {
  const kind = String(state || "").toLowerCase().replace(/\s+/g, "-");
  return h("span", { class: `badge badge-${kind}` }, state);
}

export function table(columns, rows, { empty = "Nothing here yet.", caption } = {}) {
  // columns: [{label, cell(row) -> node|text, class?}]
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)));
  const body = rows.length
    ? rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.cell(r)))))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty))];
  return h("div", { class: "table-wrap" },
    h("table", {}, caption ? h("caption", {}, caption) : null, h("thead", {}, head),
      h("tbody", {}, body)));
}

export function link(href, text, props = {}) {
  return h("a", { href, ...props }, text);
}

export function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), children);
}

export function message(kind, text) {
  return h("p", { class: `message message-${kind}`, role: kind === "error" ? "alert" : "status" },
    text);
}

export function field(label, input, { hint, error, id } = {}) {
  const fid = id || input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = fid;
  const err = h("p", { class: "field-error", id: `${fid}-error`, role: "alert" }, error || "");
  input.setAttribute("aria-describedby", `${fid}-error${hint ? ` ${fid}-hint` : ""}`);
  // A message about a value goes away as soon as the value is edited.
  input.addEventListener("input", () => setFieldError(input, ""));
  input.addEventListener("change", () => setFieldError(input, ""));
  return h("div", { class: "field" },
    h("label", { for: fid }, label),
    input,
    hint ? h("p", { class: "hint", id: `${fid}-hint` }, hint) : null,
    err);
}

export function setFieldError(input, text) {
  const err = document.getElementById(`${input.id}-error`);
  if (err) err.textContent = text || "";
  if (text) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

export function pageHead(title, { sub, actions } = {}) {
  return h("div", { class: "page-head" },
    h("div", {}, h("h1", {}, title), sub ? h("p", { class: "sub" }, sub) : null),
    actions ? h("div", { class: "actions" }, actions) : null);
}

export function stat(label, value, { kind } = {}) {
  return h("div", { class: `stat${kind ? ` stat-${kind}` : ""}` },
    h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, label));
}

export function facts(options, pairs) {
  // A definition list of (label, value) pairs; values that are empty show a dash.
  if (pairs === undefined) [options, pairs] = [{}, options];
  return h("dl", { class: options.wide ? "facts facts-wide" : "facts" }, pairs.map(([label, value]) => [
    h("dt", {}, label),
    h("dd", {}, value === null || value === undefined || value === "" ||
      (Array.isArray(value) && !value.length) ? "—" : value),
  ]));
}

export function chips(items, { remove } = {}) {
  return h("ul", { class: "chips" }, items.map((item) => h("li", { class: "chip" }, item,
    remove ? h("button", { type: "button", class: "chip-remove", "aria-label": `Remove ${item}`,
      title: `Remove ${item}`, onclick: () => remove(item) }, "×") : null)));
}
