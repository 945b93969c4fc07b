// Artifacts: search them all (built-in, ForensicArtifacts, the server's own), read one.

import { get } from "../api.js";
import { facts, h, link, pageHead, section, table } from "../dom.js";
import { navigate } from "../router.js";
import { can } from "../session.js";

const SHOWN = 500;

export async function artifactsPage(_params, query) {
  const search = query.get("search") || "";
  const found = await get("/artifacts", { search: search || undefined });
  const input = h("input", { type: "search", name: "search", value: search,
    "aria-label": "Search artifacts", placeholder: "name or words of the description" });
  const node = h("div", { class: "page" },
    pageHead("Artifacts", { sub: `${found.length.toLocaleString("en-US")} found`,
      actions: can("ARTIFACT_WRITER")
        ? h("a", { href: "/ui/artifacts/new", class: "button primary" }, "New server artifact")
        : null }),
    h("form", { class: "search-bar", role: "search", onsubmit: (e) => {
      e.preventDefault();
      navigate(`/ui/artifacts?${new URLSearchParams({ search: input.value.trim() })}`);
    } }, input, h("button", { type: "submit", class: "primary" }, "Search")),
    table([
      { label: "Name", cell: (a) => link(`/ui/artifacts/${encodeURIComponent(a.name)}`, a.name) },
      { label: "Type", cell: (a) => a.type },
      { label: "Summary", cell: (a) => a.summary },
      { label: "From", class: "origin", cell: (a) => a.origin },
    ], found.slice(0, SHOWN), { empty: "No artifact matches.",
      caption: found.length > SHOWN ? `The first ${SHOWN}: search to narrow.` : null }));
  return { node };
}

export async function artifactPage([name]) {
  const a = await get(`/artifacts/${encodeURIComponent(name)}`);
  const actions = [
    a.type === "CLIENT" && can("START_HUNT")
      ? h("a", { href: `/ui/hunts/new?artifact=${encodeURIComponent(a.name)}`, class: "button" },
        "Hunt with it") : null,
    can("ARTIFACT_WRITER")
      ? h("a", { href: `/ui/artifacts/${encodeURIComponent(a.name)}/edit`, class: "button" }, "Edit")
      : null,
  ];
  const node = h("div", { class: "page" },
    pageHead(a.name, { sub: a.type || "CLIENT", actions }),
    section("Description", h("p", { class: "prose" }, a.description || "No description.")),
    h("div", { class: "columns" },
      section("Parameters", table([
        { label: "Name", class: "mono", cell: (p) => p.name },
        { label: "Type", cell: (p) => p.type || "string" },
        { label: "Default", class: "mono", cell: (p) => p.default === undefined ? "" : JSON.stringify(p.default) },
        { label: "Description", cell: (p) => p.description || "" },
      ], a.parameters || [], { empty: "No parameters." })),
      section("Requirements", facts([
        ["Permissions", (a.required_permissions || []).join(", ") || "none"],
        ["Resources", Object.entries(a.resources || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "defaults"],
        ["Precondition", a.precondition ? h("pre", {}, a.precondition) : "none"],
      ]))),
    (a.sources || []).map((s, i) => section(`Source ${s.name || i + 1}`,
      s.description ? h("p", {}, s.description) : null,
      s.precondition ? h("p", {}, "Precondition: ", h("code", {}, s.precondition)) : null,
      h("pre", { class: "sql" }, s.query))));
  return { node };
}
