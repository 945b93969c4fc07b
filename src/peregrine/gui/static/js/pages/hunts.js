// Hunts: the list, filtered by state, paged by the server.

import { get } from "../api.js";
import { badge, h, link, pageHead, table, when } from "../dom.js";
import { pager } from "../components.js";
import { navigate } from "../router.js";
import { can } from "../session.js";

const PAGE = 50;
const STATES = ["Running", "Paused", "Stopped", "Archived"];

export async function huntsPage(_params, query) {
  const state = query.get("state") || "";
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  // The API has no total for hunts: one row more than a page says whether a next page exists.
  const hunts = await get("/hunts", { state: state || undefined, limit: PAGE + 1, offset });
  const more = hunts.length > PAGE;
  const go = (o, s = state) => navigate(`/ui/hunts?${new URLSearchParams({ state: s, offset: o })}`);
  const filter = h("select", { "aria-label": "State", onchange: () => go(0, filter.value) },
    h("option", { value: "" }, "All states"),
    STATES.map((s) => h("option", { value: s, selected: s === state }, s)));
  const node = h("div", { class: "page" },
    pageHead("Hunts", { actions: [filter, can("START_HUNT")
      ? h("a", { href: "/ui/hunts/new", class: "button primary" }, "New hunt") : null] }),
    huntsTable(hunts.slice(0, PAGE)),
    pager({ offset, limit: PAGE, shown: Math.min(hunts.length, PAGE), more, onPage: go,
      label: "hunts" }));
  return { node };
}

function huntsTable(hunts) {
  return table([
    { label: "Hunt", class: "mono", cell: (x) => link(`/ui/hunts/${x.hunt_id}`, x.hunt_id) },
    { label: "Description", cell: (x) => x.description },
    { label: "Artifacts", cell: (x) => x.artifacts.map((a) => a.name).join(", ") },
    { label: "State", cell: (x) => badge(x.state) },
    { label: "Creator", cell: (x) => x.creator },
    { label: "Created", cell: (x) => when(x.created) },
    { label: "Expires", cell: (x) => when(x.expires) },
  ], hunts, { empty: "No hunts." });
}
