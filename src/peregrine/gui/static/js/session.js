// Who is signed in and what they may do. Controls a user may not use are not drawn at all;
// the API refuses them anyway, this only keeps the page honest about what works.

import { ApiError, get, hasCsrf, post, setCsrf } from "./api.js";

export const session = { me: null };

export function can(permission) {
  return Boolean(session.me && session.me.permissions.includes(permission));
}

/** The signed-in user, or null when the browser has no usable session. */
export async function load() {
  try {
    const me = await get("/me");
    // A session whose CSRF token this browser lost cannot change anything: sign in again.
    session.me = me.credential === "session" && !hasCsrf() ? null : me;
  } catch (exc) {
    if (!(exc instanceof ApiError) || exc.status !== 401) throw exc;
    session.me = null;
  }
  return session.me;
}

export async function signIn(username, password) {
  const me = await post("/auth/login", { username, password });
  setCsrf(me.csrf_token);
  session.me = me;
  return me;
}

export async function signOut() {
  try {
    await post("/auth/logout");
  } finally {
    setCsrf(null);
    session.me = null;
  }
}
