// The fleet at a glance: clients, collections in flight, running hunts, server health.
// Live: the server sends a new snapshot whenever it changes (server-sent events); if the
// stream ends (a server restart), the page reads the same every few seconds instead.

import { get, watch } from "../api.js";
import { badge, count, h, link, message, pageHead, replace, section, stat, table, when }
  from "../dom.js";

const REFRESH_MS = 5000;
const CLIENTS_REFRESH_MS = 15000;

export async function fleetPage() {
  const stats = h("div", { class: "stats", "aria-live": "polite" });
  const health = h("div");
  const hunts = h("div");
  const flows = h("div");
  const recent = h("div");
  const updated = h("span", { class: "sub" });
  let clientsRead = 0;
  function draw({ status, hunts: running, collections }, how) {
    replace(stats,
      stat("clients", count(status.clients)),
      stat("online", count(status.connected), { kind: "good" }),
      stat("offline", count(status.clients - status.connected)),
      stat("collections in flight", count(status.flows_in_flight)),
      stat("running hunts", count(status.running_hunts)));
    replace(health, serverHealth(status));
    replace(hunts, huntTable(running));
    if (collections) replace(flows, flowTable(collections));
    replace(updated, `${how} · updated ${new Date().toLocaleTimeString()}`);
    if (Date.now() - clientsRead > CLIENTS_REFRESH_MS) {
      clientsRead = Date.now();
      get("/clients", { q: "recent:1h", limit: 10 }).then((seen) => replace(recent, clientTable(seen.items)),
        (exc) => replace(recent, message("error", exc.message)));
    }
  }
  async function poll() {
    try {
      const [status, running] = await Promise.all([
        get("/status"), get("/hunts", { state: "Running", limit: 10 })]);
      draw({ status, hunts: running }, "read every 5 s");
    } catch (exc) {
      replace(updated, message("error", exc.message));
    }
  }
  let timer = null;
  let stopLive = null;
  const first = new Promise((resolve) => {
    stopLive = watch("/fleet/events", (data) => { draw(data, "live"); resolve(); }, () => {
      // The stream ended: read the overview on a timer from now on.
      if (!timer) timer = setInterval(() => { if (!document.hidden) poll(); }, REFRESH_MS);
      poll().then(resolve);
    });
  });
  await first;
  const node = h("div", { class: "page" },
    pageHead("Fleet", { actions: updated }),
    stats,
    h("div", { class: "columns" },
      section("Running hunts", hunts, link("/ui/hunts", "All hunts →")),
      section("Server", health)),
    section("Collections in flight (newest)", flows),
    section("Clients seen in the last hour", recent,
      link("/ui/clients", "All clients →")));
  return { node, stop: () => { clearInterval(timer); if (stopLive) stopLive(); } };
}

function flowTable(flows) {
  return table([
    { label: "Collection", class: "mono", cell: (f) => link(`/ui/collections/${f.flow_id}`, f.flow_id) },
    { label: "Client", class: "mono", cell: (f) => link(`/ui/clients/${f.client_id}`, f.client_id) },
    { label: "Artifacts", cell: (f) => f.artifacts.map((a) => a.name).join(", ") },
    { label: "State", cell: (f) => badge(f.state) },
    { label: "Created", cell: (f) => when(f.created) },
    { label: "By", cell: (f) => f.hunt_id ? link(`/ui/hunts/${f.hunt_id}`, f.hunt_id) : f.creator },
  ], flows, { empty: "No collection is in flight." });
}

function serverHealth(status) {
  const degraded = status.degraded.length
    ? h("ul", { class: "problems" }, status.degraded.map((d) => h("li", {}, d)))
    : h("span", { class: "ok" }, "all services working");
  return h("dl", { class: "facts" },
    h("dt", {}, "version"), h("dd", {}, status.version),
    h("dt", {}, "datastore"), h("dd", {}, status.datastore),
    h("dt", {}, "this frontend"), h("dd", {}, status.leader ? "leader" : "follower"),
    h("dt", {}, "health"), h("dd", {}, degraded));
}

function huntTable(hunts) {
  return table([
    { label: "Hunt", cell: (x) => link(`/ui/hunts/${x.hunt_id}`, x.description || x.hunt_id) },
    { label: "Artifacts", cell: (x) => x.artifacts.map((a) => a.name).join(", ") },
    { label: "State", cell: (x) => badge(x.state) },
    { label: "Started", cell: (x) => when(x.started) },
  ], hunts, { empty: "No hunt is running." });
}

export function clientTable(clients) {
  return table([
    { label: "", class: "dot-col", cell: (c) => h("span", {
      class: `dot ${c.online ? "dot-on" : "dot-off"}`, title: c.online ? "online" : "offline",
      "aria-label": c.online ? "online" : "offline", role: "img" }) },
    { label: "Host", cell: (c) => link(`/ui/clients/${c.client_id}`, c.hostname || c.client_id) },
    { label: "Client id", class: "mono", cell: (c) => c.client_id },
    { label: "OS", cell: (c) => c.os || "—" },
    { label: "Labels", cell: (c) => c.labels.join(", ") },
    { label: "Addresses", class: "mono", cell: (c) => c.ip_addresses.slice(0, 3).join(", ") },
    { label: "Last seen", cell: (c) => when(c.last_seen) },
  ], clients, { empty: "No client matches." });
}
