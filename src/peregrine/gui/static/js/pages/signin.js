// Sign in with a Peregrine account (the API's session login: cookie + CSRF token).

import { h, message, replace } from "../dom.js";
import { signIn } from "../session.js";

export function signInPage(done) {
  const username = h("input", { id: "username", name: "username", autocomplete: "username",
    required: true, autofocus: true });
  const password = h("input", { id: "password", name: "password", type: "password",
    autocomplete: "current-password", required: true });
  const status = h("div", { class: "signin-status" });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { class: "signin", onsubmit: async (event) => {
    event.preventDefault();
    button.disabled = true;
    replace(status);
    try {
      await signIn(username.value.trim(), password.value);
      done();
    } catch (exc) {
      let text = exc.message;
      if (exc.status === 429) text += ` (try again in ${exc.retryAfter || "a few"} s)`;
      replace(status, message("error", text));
      password.select();
    } finally {
      button.disabled = false;
    }
  } },
  h("h1", {}, "Peregrine"),
  h("p", { class: "hint" }, "Sign in with your Peregrine account."),
  h("div", { class: "field" }, h("label", { for: "username" }, "User name"), username),
  h("div", { class: "field" }, h("label", { for: "password" }, "Password"), password),
  status,
  button,
  h("p", { class: "hint" },
    "No password yet? On the server: ", h("code", {}, "peregrine users passwd NAME"), "."));
  return h("main", { class: "signin-page" }, form);
}
