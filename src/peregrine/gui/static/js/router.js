// Moving between pages without reloading: pages call navigate(); main.js draws the view.

let draw = () => {};

export function onNavigate(callback) {
  draw = callback;
}

export function navigate(href, { replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  draw();
}
