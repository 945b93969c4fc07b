// The application shell: the top bar, the router (paths under /ui/), and sign-in.
// Each page is a function (params, query) -> {node, stop?}; stop() ends its live updates.

import { onSignedOut } from "./api.js";
import { h, link, message, replace } from "./dom.js";
import { navigate, onNavigate } from "./router.js";
import { can, load, session, signOut } from "./session.js";
import { signInPage } from "./pages/signin.js";
import { fleetPage } from "./pages/fleet.js";
import { clientsPage } from "./pages/clients.js";
import { clientPage } from "./pages/client.js";
import { launchPage } from "./pages/launch.js";
import { filesPage } from "./pages/files.js";
import { collectionPage } from "./pages/collection.js";
import { huntsPage } from "./pages/hunts.js";
import { newHuntPage } from "./pages/new_hunt.js";
import { huntPage } from "./pages/hunt.js";
import { artifactsPage, artifactPage } from "./pages/artifacts.js";
import { editArtifactPage, newArtifactPage } from "./pages/artifact_editor.js";
import { adminPage } from "./pages/admin.js";
import { alertsPage } from "./pages/alerts.js";
import { eventsPage } from "./pages/events.js";
import { notebookPage, notebooksPage } from "./pages/notebooks.js";

const ROUTES = [
  [/^\/ui\/?$/, fleetPage, "fleet"],
  [/^\/ui\/clients\/?$/, clientsPage, "clients"],
  [/^\/ui\/clients\/(C\.[0-9a-f]{16})\/?$/, clientPage, "clients"],
  [/^\/ui\/clients\/(C\.[0-9a-f]{16})\/launch\/?$/, launchPage, "clients"],
  [/^\/ui\/clients\/(C\.[0-9a-f]{16})\/files\/?$/, filesPage, "clients"],
  [/^\/ui\/collections\/(F\.[0-9A-Za-z]{16})\/?$/, collectionPage, "clients"],
  [/^\/ui\/hunts\/?$/, huntsPage, "hunts"],
  [/^\/ui\/hunts\/new\/?$/, newHuntPage, "hunts"],
  [/^\/ui\/hunts\/(H\.[0-9a-f]{16})\/?$/, huntPage, "hunts"],
  [/^\/ui\/artifacts\/?$/, artifactsPage, "artifacts"],
  [/^\/ui\/artifacts\/new\/?$/, newArtifactPage, "artifacts"],
  [/^\/ui\/artifacts\/([^/]+)\/edit\/?$/, editArtifactPage, "artifacts"],
  [/^\/ui\/artifacts\/([^/]+)\/?$/, artifactPage, "artifacts"],
  [/^\/ui\/alerts\/?$/, alertsPage, "alerts"],
  [/^\/ui\/events\/?$/, eventsPage, "events"],
  [/^\/ui\/notebooks\/?$/, notebooksPage, "notebooks"],
  [/^\/ui\/notebooks\/(N\.[0-9a-f]{16})\/?$/, notebookPage, "notebooks"],
  [/^\/ui\/admin\/?$/, adminPage, "admin"],
];

const root = document.getElementById("app");
let current = null; // the page shown: {stop?}
let firstRender = true;

async function render() {
  if (current && current.stop) current.stop();
  current = null;
  if (!session.me) {
    showSignIn();
    return;
  }
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  const main = h("main", { id: "main", tabindex: "-1" });
  replace(root, topBar(route ? route[2] : ""), main);
  if (!route) {
    replace(main, message("error", `No page at ${path}.`), link("/ui/", "Go to the fleet overview"));
    return;
  }
  const [pattern, page] = route;
  const params = path.match(pattern).slice(1).map(decodeURIComponent);
  main.append(h("p", { class: "loading" }, "Loading…"));
  try {
    const shown = await page(params, query);
    if (location.pathname !== path) { // navigated away while loading
      if (shown.stop) shown.stop();
      return;
    }
    current = shown;
    replace(main, shown.node);
    // After moving to another page, keyboard and screen-reader users start at its content.
    if (!firstRender && !main.contains(document.activeElement)) main.focus();
    firstRender = false;
    const heading = main.querySelector("h1");
    document.title = heading ? `${heading.textContent} · Peregrine` : "Peregrine";
  } catch (exc) {
    replace(main, message("error", exc.message));
  }
}

function topBar(active) {
  const nav = [
    ["fleet", "/ui/", "Fleet"],
    ["clients", "/ui/clients", "Clients"],
    ["hunts", "/ui/hunts", "Hunts"],
    ["artifacts", "/ui/artifacts", "Artifacts"],
    ["events", "/ui/events", "Events"],
    ["alerts", "/ui/alerts", "Alerts"],
    ["notebooks", "/ui/notebooks", "Notebooks"],
  ];
  if (can("SERVER_ADMIN")) nav.push(["admin", "/ui/admin", "Admin"]);
  const search = h("input", {
    type: "search", name: "q", placeholder: "Find clients: host:web* label:prod os:linux",
    "aria-label": "Find clients", value: active === "clients" ? currentQuery() : "",
  });
  return h("header", { class: "topbar" },
    h("a", { href: "#main", class: "skip" }, "Skip to content"),
    h("a", { href: "/ui/", class: "brand" }, "Peregrine"),
    h("nav", { "aria-label": "Main" }, nav.map(([key, href, label]) =>
      h("a", { href, class: key === active ? "active" : null,
        "aria-current": key === active ? "page" : null }, label))),
    h("form", { class: "quick-search", role: "search", onsubmit: (e) => {
      e.preventDefault();
      navigate(`/ui/clients?q=${encodeURIComponent(search.value.trim())}`);
    } }, search),
    h("div", { class: "user" },
      h("span", { title: session.me.permissions.join(", ") }, session.me.name),
      h("button", { type: "button", class: "link-button", onclick: async () => {
        try { await signOut(); } finally { render(); }
      } }, "Sign out")));
}

function currentQuery() {
  return new URLSearchParams(location.search).get("q") || "";
}

function showSignIn() {
  replace(root, signInPage(async () => {
    if (location.pathname === "/ui/signin") history.replaceState(null, "", "/ui/");
    render();
  }));
}

// Links inside the app change the view without reloading; others behave as links do.
document.addEventListener("click", (event) => {
  const a = event.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download") || event.defaultPrevented) return;
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const to = new URL(a.href, location.href);
  if (to.origin !== location.origin || !to.pathname.startsWith("/ui")) return;
  if (to.pathname.startsWith("/ui/assets/")) return;
  if (to.pathname === location.pathname && to.hash) return; // in-page link (skip link)
  event.preventDefault();
  navigate(to.pathname + to.search);
});
window.addEventListener("popstate", render);
onNavigate(render);
onSignedOut(() => {
  if (session.me) {
    session.me = null;
    render();
  }
});

load().then(render, (exc) => replace(root, message("error", exc.message)));
