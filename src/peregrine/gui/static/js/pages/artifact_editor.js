// Writing a server artifact: YAML in an editor whose line numbers carry the checker's problems
// (the server's own check: YAML, fields, types, every query compiled), before anything is
// saved; saving checks again and stores it (PUT /artifacts, audited).

import { get, post, put } from "../api.js";
import { h, message, pageHead, replace } from "../dom.js";
import { navigate } from "../router.js";

const CHECK_AFTER_MS = 800;
const TEMPLATE = `name: Custom.Example
description: |
  What this artifact finds, and why an analyst would collect it.
type: CLIENT
parameters:
  - name: Limit
    type: int
    default: 10
    description: How many rows.
sources:
  - query: |
      SELECT pid, name, username FROM pslist() LIMIT :Limit
`;

export async function newArtifactPage() {
  return editor({ title: "New server artifact", text: TEMPLATE });
}

export async function editArtifactPage([name]) {
  const found = await get(`/artifacts/${encodeURIComponent(name)}/yaml`);
  return editor({
    title: `Edit ${found.name}`,
    text: found.yaml,
    note: found.custom ? null
      : "This is not a server artifact: saving stores a server artifact of this name, which " +
        "is used instead of the one from " + found.origin + ".",
  });
}

function editor({ title, text, note }) {
  const area = h("textarea", { id: "artifact-yaml", class: "code", spellcheck: "false",
    wrap: "off", autocomplete: "off", "aria-label": "Artifact YAML",
    "aria-describedby": "artifact-problems" });
  area.value = text;
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const problems = h("div", { id: "artifact-problems", "aria-live": "polite" });
  const status = h("div");
  let timer = null;
  let serial = 0;

  function lines() {
    return area.value.split("\n").length;
  }

  function drawGutter(found = []) {
    const byLine = new Map();
    for (const p of found) if (p.line) byLine.set(p.line, [...(byLine.get(p.line) || []), p]);
    replace(gutter, Array.from({ length: lines() }, (_, i) => {
      const here = byLine.get(i + 1);
      const bad = here && here.some((p) => p.severity === "error");
      return h("div", { class: here ? (bad ? "bad" : "warned") : null, dataset: { line: i + 1 },
        title: here ? here.map((p) => p.message).join("\n") : null }, String(i + 1));
    }));
    gutter.scrollTop = area.scrollTop;
  }

  function goToLine(line) {
    const starts = [0];
    for (let i = 0; i < area.value.length; i++) if (area.value[i] === "\n") starts.push(i + 1);
    const at = starts[Math.min(line, starts.length) - 1] || 0;
    area.focus();
    area.setSelectionRange(at, at);
    const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 18;
    area.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }

  function drawProblems(found) {
    drawGutter(found);
    if (!found.length) {
      replace(problems, h("p", { class: "ok" }, "✓ No problems: the YAML is valid and every query compiles."));
      return;
    }
    replace(problems, h("ul", { class: "problem-list" }, found.map((p) => h("li", {
      class: p.severity === "error" ? "error-text" : "warn" },
    p.line ? h("button", { type: "button", class: "link-button", onclick: () => goToLine(p.line) },
      `Line ${p.line}`) : "—",
    `${p.severity}: `, p.artifact ? `${p.artifact}: ` : "", p.message))));
  }

  async function check() {
    const mine = ++serial;
    const sent = area.value;
    const found = await post("/artifacts/check", { yaml: sent });
    if (mine !== serial || sent !== area.value) return null;
    drawProblems(found);
    return found;
  }

  async function save() {
    replace(status);
    try {
      clearTimeout(timer);
      const found = await check();
      if (found === null) return; // the text changed meanwhile: its own check is on the way
      const errors = found.filter((p) => p.severity === "error");
      if (errors.length) {
        replace(status, message("error", `Not saved: ${errors.length} problem(s) to fix first.`));
        if (errors[0].line) goToLine(errors[0].line);
        return;
      }
      const saved = await put("/artifacts", { yaml: area.value });
      navigate(`/ui/artifacts/${encodeURIComponent(saved[0].name)}`);
    } catch (exc) {
      replace(status, message("error", exc.message));
    }
  }

  area.addEventListener("input", () => {
    drawGutter();
    clearTimeout(timer);
    timer = setTimeout(() => check().catch((exc) => replace(problems, message("error", exc.message))),
      CHECK_AFTER_MS);
  });
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  area.addEventListener("keydown", (event) => {
    // Tab indents (YAML wants spaces); Escape then Tab leaves the editor, as usual.
    if (event.key === "Tab" && !event.shiftKey && !area.dataset.escaped) {
      event.preventDefault();
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      area.dispatchEvent(new Event("input"));
    }
    if (event.key === "Escape") area.dataset.escaped = "1";
    else if (event.key !== "Tab") delete area.dataset.escaped;
  });
  drawGutter();
  check().catch((exc) => replace(problems, message("error", exc.message)));
  const node = h("div", { class: "page" },
    pageHead(title, {
      sub: "Checked by the server as you type; saved only when it has no errors.",
      actions: [
        h("button", { type: "button", onclick: () => check().catch((exc) =>
          replace(status, message("error", exc.message))) }, "Check"),
        h("button", { type: "button", class: "primary", onclick: save }, "Save"),
      ],
    }),
    note ? message("warning", note) : null,
    status,
    h("section", { class: "panel editor-panel" },
      h("label", { for: "artifact-yaml", class: "label" }, "Artifact YAML",
        h("span", { class: "hint" }, " (Tab indents; Escape then Tab moves on)")),
      h("div", { class: "editor" }, gutter, area)),
    h("section", { class: "panel" }, h("h2", {}, "Problems"), problems));
  return { node, stop: () => clearTimeout(timer) };
}
