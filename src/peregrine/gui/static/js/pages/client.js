// One client: what interrogation found, its labels, its collections, and launching one.

import { get, post } from "../api.js";
import { badge, chips, count, facts, h, link, message, pageHead, replace, section, table, time,
  when } from "../dom.js";
import { can } from "../session.js";

export async function clientPage([clientId]) {
  const [client, flows] = await Promise.all([
    get(`/clients/${clientId}`),
    get(`/clients/${clientId}/collections`, { limit: 50 }),
  ]);
  const actions = [
    h("a", { href: `/ui/clients/${clientId}/files?path=/`, class: "button" }, "Browse files"),
    h("a", { href: `/ui/events?client_id=${clientId}`, class: "button" }, "Its events"),
    h("a", { href: `/ui/alerts?state=&client_id=${clientId}`, class: "button" }, "Its alerts"),
    can("COLLECT_CLIENT")
      ? h("a", { href: `/ui/clients/${clientId}/launch`, class: "button primary" }, "New collection")
      : null,
  ];
  const node = h("div", { class: "page" },
    pageHead(client.hostname || clientId, {
      sub: [h("span", { class: "mono" }, clientId), " · ",
        h("span", { class: client.online ? "online" : "offline" },
          client.online ? "online" : `offline, last seen ${new Date(client.last_seen * 1000).toLocaleString()}`)],
      actions,
    }),
    h("div", { class: "columns" },
      section("Host", facts([
        ["OS", [client.os, client.release].filter(Boolean).join(" ")],
        ["Kernel", client.kernel],
        ["Architecture", client.arch],
        ["FQDN", client.fqdn],
        ["Addresses", client.ip_addresses.join(", ")],
        ["MAC addresses", client.mac_addresses.join(", ")],
        ["Users", client.users.join(", ")],
        ["Agent", client.agent_version],
        ["Booted", time(client.boot_time)],
        ["First seen", time(client.first_seen)],
        ["Last seen", time(client.last_seen)],
        ["Interrogated", time(client.interrogated)],
      ])),
      section("Labels", labelsEditor(clientId, client.labels))),
    section("Collections", collectionsTable(flows)));
  return { node };
}

function labelsEditor(clientId, initial) {
  const box = h("div", { class: "labels" });
  const status = h("div");
  const editable = can("LABEL_CLIENT");
  async function change(body) {
    try {
      draw(await post(`/clients/${clientId}/labels`, body));
      replace(status);
    } catch (exc) {
      replace(status, message("error", exc.message));
    }
  }
  function draw(labels) {
    const input = h("input", { name: "label", "aria-label": "New label", placeholder: "new label",
      pattern: "[^\\s]+", title: "one word, no spaces" });
    replace(box,
      labels.length ? chips(labels, { remove: editable ? (l) => change({ remove: [l] }) : null })
        : h("p", { class: "hint" }, "No labels."),
      editable ? h("form", { class: "inline-form", onsubmit: (e) => {
        e.preventDefault();
        const label = input.value.trim();
        if (label) change({ add: [label] });
      } }, input, h("button", { type: "submit" }, "Add label")) : null,
      status);
  }
  draw(initial);
  return box;
}

export function collectionsTable(flows) {
  return table([
    { label: "Collection", class: "mono", cell: (f) => link(`/ui/collections/${f.flow_id}`, f.flow_id) },
    { label: "Artifacts", cell: (f) => f.artifacts.map((a) => a.name).join(", ") },
    { label: "State", cell: (f) => badge(f.state) },
    { label: "Created", cell: (f) => when(f.created) },
    { label: "Rows", class: "num", cell: (f) => count(f.rows) },
    { label: "Creator", cell: (f) => f.hunt_id ? link(`/ui/hunts/${f.hunt_id}`, f.hunt_id) : f.creator },
  ], flows, { empty: "No collection on this client yet." });
}
