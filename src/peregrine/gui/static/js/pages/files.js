// A client's file browser: directories as a tree, each listing the one a collection took (with
// its time), refreshed on request; a file's details (stat, hashes) and its download into a
// collection's uploads. Who may collect asks the client; everyone else reads what is stored.

import { get, post, url, watch } from "../api.js";
import { bytes, count, facts, h, link, message, pageHead, replace, table, time, when }
  from "../dom.js";
import { pager } from "../components.js";
import { navigate } from "../router.js";
import { can } from "../session.js";

const PAGE = 500;
const FINAL = new Set(["Finished", "Error", "Cancelled"]);

export function filesHref(clientId, path, file) {
  const query = new URLSearchParams({ path });
  if (file) query.set("file", file);
  return `/ui/clients/${clientId}/files?${query}`;
}

function parent(path) {
  const at = path.lastIndexOf("/");
  return at <= 0 ? "/" : path.slice(0, at);
}

function join(dir, name) {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/** "/", "/usr", "/usr/bin" for "/usr/bin". */
function ancestors(path) {
  const out = ["/"];
  for (const part of path.split("/").filter(Boolean)) out.push(join(out[out.length - 1], part));
  return out;
}

export async function filesPage([clientId], query) {
  const path = normalise(query.get("path") || "/");
  const vfs = (p, extra) => get(`/clients/${clientId}/vfs`, { path: p, ...extra });
  const [client, chain] = await Promise.all([
    get(`/clients/${clientId}`),
    Promise.all(ancestors(path).map((p) => vfs(p, { limit: 1000 }))),
  ]);
  const stops = new Map(); // flow id -> stop(): the collections this page waits on
  const tree = h("nav", { class: "vfs-tree panel", "aria-label": "Directories" });
  const listing = h("section", { class: "panel vfs-listing", "aria-label": "Directory listing" });
  const details = h("section", { class: "panel vfs-details", "aria-label": "File details" });
  let offset = 0;
  let current = chain[chain.length - 1];
  let selected = query.get("file") || null;

  function follow(flow, then) {
    // Live state of a collection this page waits on; `then` draws again once it is final.
    if (stops.has(flow.flow_id)) return;
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      stops.get(flow.flow_id)();
      then();
    };
    stops.set(flow.flow_id, watch(`/collections/${flow.flow_id}/events`, (data) => {
      if (FINAL.has(data.state)) end();
    }, end));
  }

  function drawTree() {
    const known = new Map(chain.map((l) => [l.path, l]));
    const onPath = (p) => path === p || path.startsWith(`${p}/`);
    const branch = (dir) => {
      // A directory's subdirectories as its stored listing has them; the one on the way to the
      // current path is shown even when this directory was never listed.
      const stored = known.get(dir);
      const names = stored && stored.finished
        ? stored.entries.filter((e) => e.type === "dir").map((e) => e.name) : [];
      const next = ancestors(path).find((p) => p !== dir && parent(p) === dir);
      if (next && !names.includes(next.slice(next.lastIndexOf("/") + 1))) {
        names.unshift(next.slice(next.lastIndexOf("/") + 1));
      }
      const items = names.map((name) => {
        const child = join(dir, name);
        const here = child === path;
        const unlisted = onPath(child) && !known.get(child)?.finished;
        return h("li", {},
          link(filesHref(clientId, child), name, { class: here ? "current" : null,
            "aria-current": here ? "page" : null }),
          unlisted ? h("span", { class: "hint" }, " (not listed)") : null,
          onPath(child) ? branch(child) : null);
      });
      return items.length ? h("ul", {}, items) : null;
    };
    replace(tree, h("h2", {}, "Directories"),
      h("ul", {}, h("li", {},
        link(filesHref(clientId, "/"), "/", { class: path === "/" ? "current" : null,
          "aria-current": path === "/" ? "page" : null }),
        known.get("/")?.finished ? null : h("span", { class: "hint" }, " (not listed)"),
        branch("/"))));
  }

  async function relist() {
    current = await vfs(path, { offset, limit: PAGE });
    if (offset === 0) chain[chain.length - 1] = current;
    drawListing();
    drawTree();
  }

  async function launch(kind, target, after, status) {
    try {
      const flow = await post(`/clients/${clientId}/vfs/${kind}`, { path: target });
      follow(flow, after);
      await after();
    } catch (exc) {
      replace(status, message("error", exc.message));
    }
  }

  function drawListing() {
    const status = h("div");
    const busy = current.pending;
    const refresh = can("COLLECT_CLIENT") ? h("button", {
      type: "button", class: current.finished ? null : "primary", disabled: Boolean(busy),
      onclick: () => launch("list", path, relist, status),
    }, busy ? "Listing…" : (current.finished ? "Refresh listing" : "List this directory")) : null;
    const about = [];
    if (current.finished) {
      about.push("Listed ", h("time", { title: time(current.listed) }, when(current.listed)),
        " by collection ", link(`/ui/collections/${current.finished.flow_id}`, current.finished.flow_id),
        ` · ${count(current.total)} entries`);
    } else {
      about.push(can("COLLECT_CLIENT") ? "Not listed yet: list it to see what it holds."
        : "Not listed yet. Someone who may collect from this client can list it.");
    }
    if (busy) status.append(message("info", `A new listing is being taken (${busy.flow_id}, ${busy.state}).`));
    if (current.failed) {
      status.append(message("warning", `The newest listing failed (${current.failed.flow_id}): ` +
        `${current.failed.error || current.failed.state}`));
    }
    if (busy) follow(busy, relist);
    const rows = current.entries;
    replace(listing,
      h("div", { class: "results-head" }, h("h2", {}, path), h("div", { class: "actions" }, refresh)),
      h("p", { class: "sub" }, about),
      status,
      current.total > PAGE ? pager({ offset, limit: PAGE, total: current.total, label: "entries",
        onPage: (o) => { offset = o; relist(); } }) : null,
      current.finished ? entriesTable(rows) : null);
  }

  function entriesTable(rows) {
    return table([
      { label: "Name", cell: (e) => e.type === "dir"
        ? link(filesHref(clientId, join(path, e.name)), `${e.name}/`, { class: "vfs-dir" })
        : h("button", { type: "button", class: "link-button vfs-file", "aria-pressed": String(e.path === selected),
          onclick: () => select(e.path) }, e.name) },
      { label: "Type", cell: (e) => e.is_link ? `link → ${e.link_target}` : e.type },
      { label: "Size", class: "num", cell: (e) => e.type === "dir" ? "" : bytes(e.size) },
      { label: "Mode", class: "mono", cell: (e) => e.mode },
      { label: "Owner", cell: (e) => [e.owner, e.group_name].filter(Boolean).join(":") },
      { label: "Modified", cell: (e) => time(e.mtime) },
    ], rows, { empty: "This directory is empty (or could not be read: the collection's log says why)." });
  }

  function select(file) {
    selected = file;
    history.replaceState(null, "", filesHref(clientId, path, file));
    for (const b of listing.querySelectorAll("button.vfs-file")) {
      b.setAttribute("aria-pressed", String(b.textContent === file.slice(file.lastIndexOf("/") + 1)));
    }
    drawDetails();
  }

  async function drawDetails() {
    details.hidden = !selected;
    if (!selected) return;
    const file = selected;
    const entry = (current.entries || []).find((e) => e.path === file);
    let stored;
    try {
      stored = await get(`/clients/${clientId}/vfs/file`, { path: file });
    } catch (exc) {
      replace(details, message("error", exc.message));
      return;
    }
    if (file !== selected) return; // another file was chosen meanwhile
    const status = h("div");
    const busy = stored.pending;
    const d = stored.details;
    const button = can("COLLECT_CLIENT") ? h("button", {
      type: "button", class: "primary", disabled: Boolean(busy),
      onclick: () => launch("download", file, drawDetails, status),
    }, busy ? "Downloading…" : (d ? "Download again" : "Download from client")) : null;
    if (busy) {
      status.append(message("info", `Collecting the file (${busy.flow_id}, ${busy.state}).`));
      follow(busy, drawDetails);
    }
    if (stored.failed) {
      status.append(message("warning", `The newest download failed (${stored.failed.flow_id}): ` +
        `${stored.failed.error || stored.failed.state}`));
    }
    const stat = d || entry || {};
    replace(details,
      h("div", { class: "results-head" }, h("h2", { class: "mono" }, file), h("div", { class: "actions" }, button)),
      status,
      facts([
        ["Size", stat.size === undefined ? null : `${bytes(stat.size)} (${count(stat.size)} bytes)`],
        ["Mode", stat.mode],
        ["Owner", [stat.owner, stat.group_name].filter(Boolean).join(":")],
        ["Modified", time(stat.mtime)],
        ["Accessed", time(stat.atime)],
        ["Changed", time(stat.ctime)],
        ["Born", time(stat.btime)],
      ]),
      h("h3", { class: "section-title" }, "Hashes and copy"),
      d ? facts([
        ["MD5", h("span", { class: "mono hash" }, d.md5)],
        ["SHA-1", h("span", { class: "mono hash" }, d.sha1)],
        ["SHA-256", h("span", { class: "mono hash", "data-hash": "sha256" }, d.sha256)],
        ["Collected", [time(stored.downloaded), " by ",
          link(`/ui/collections/${stored.finished.flow_id}`, stored.finished.flow_id)]],
        ["Copy", stored.upload ? h("a", { class: "button", download: "",
          href: url(`/collections/${stored.finished.flow_id}/uploads/${stored.upload.upload_id}`) },
        `Save the copy (${bytes(stored.upload.size)})`) : "not uploaded"],
      ]) : h("p", { class: "hint" }, stored.finished
        ? "The newest download found no regular file at this path."
        : "Not downloaded yet: its hashes are computed when it is."));
  }

  const goto = h("input", { name: "path", value: path, class: "mono", "aria-label": "Go to path",
    spellcheck: "false" });
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Path" }, ancestors(path).map((p, i, all) => [
    i > 1 ? h("span", { "aria-hidden": "true" }, "/") : null,
    i === all.length - 1 ? h("strong", {}, i ? p.slice(p.lastIndexOf("/") + 1) : "/")
      : link(filesHref(clientId, p), i ? p.slice(p.lastIndexOf("/") + 1) : "/"),
  ]));
  drawTree();
  drawListing();
  drawDetails();
  const node = h("div", { class: "page" },
    pageHead(`Files on ${client.hostname || clientId}`, {
      sub: [link(`/ui/clients/${clientId}`, clientId, { class: "mono" }), " · ",
        h("span", { class: client.online ? "online" : "offline" }, client.online ? "online" : "offline")],
      actions: path !== "/" ? link(filesHref(clientId, parent(path)), "↑ Parent directory",
        { class: "button" }) : null,
    }),
    h("div", { class: "vfs-bar" }, crumbs,
      h("form", { class: "inline-form", onsubmit: (e) => {
        e.preventDefault();
        const to = goto.value.trim();
        if (to.startsWith("/")) navigate(filesHref(clientId, normalise(to)));
        else goto.setCustomValidity("An absolute path, starting with /");
        goto.reportValidity();
      } }, goto, h("button", { type: "submit" }, "Go"))),
    h("div", { class: "vfs" }, tree, h("div", { class: "vfs-main" }, listing, details)));
  goto.addEventListener("input", () => goto.setCustomValidity(""));
  return { node, stop: () => { for (const stop of stops.values()) stop(); } };
}

function normalise(path) {
  const parts = [];
  for (const part of path.split("/")) {
    if (!part || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}
