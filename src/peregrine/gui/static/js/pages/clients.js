// Clients: search with the API's syntax, paged by the server (fast at any fleet size).

import { get } from "../api.js";
import { h, pageHead, replace } from "../dom.js";
import { pager } from "../components.js";
import { navigate } from "../router.js";
import { clientTable } from "./fleet.js";

const PAGE = 50;

export async function clientsPage(_params, query) {
  const q = query.get("q") || "";
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const page = await get("/clients", { q, limit: PAGE, offset });
  const input = h("input", { type: "search", name: "q", value: q, "aria-label": "Search clients",
    placeholder: "host:web* label:prod os:linux ip:10.0.* online:true recent:15m" });
  const go = (o) => navigate(`/ui/clients?${new URLSearchParams({ q: input.value.trim(), offset: o })}`);
  const results = h("div");
  replace(results, pager({ offset, limit: PAGE, total: page.total, onPage: go, label: "clients" }),
    clientTable(page.items));
  const node = h("div", { class: "page" },
    pageHead("Clients"),
    h("form", { class: "search-bar", role: "search", onsubmit: (e) => { e.preventDefault(); go(0); } },
      input, h("button", { type: "submit", class: "primary" }, "Search")),
    h("p", { class: "hint" },
      "Terms are ANDed: host:, label:, os:, ip:, client:, online:true, recent:15m, free text, * wildcards."),
    results);
  return { node };
}
