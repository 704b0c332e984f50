// The dashboard's one module: the access token (in memory only), htmx's Authorization
// header, the live feed on /ws, and the tickers. No framework, no build step.

const CSRF = { "X-WorkPulse-CSRF": "1" };
const SESSION = "/ui/session";
const body = document.body;
let token = null;
let user = null;
let refreshing = null;
let refreshTimer = null;

function pageReady() {
  if (document.readyState !== "loading") return Promise.resolve();
  return new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
}

function status(text) {
  const el = document.getElementById("connection");
  if (el) el.textContent = text;
}

function adopt(session) {
  token = session.access_token;
  user = session.user;
  const who = document.getElementById("who");
  if (who) who.textContent = `${user.name} (${user.role})`;
  body.dataset.role = user.role;
  clearTimeout(refreshTimer);
  const seconds = Math.max(10, (session.expires_in || 300) - 60);
  refreshTimer = setTimeout(() => refresh().catch(toLogin), seconds * 1000);
}

// One refresh at a time, across this origin's tabs too (Web Locks): the refresh token
// rotates, and auth revokes the whole log-in when a spent one comes back. Serialized, each
// request carries the cookie the previous one set.
function refresh() {
  if (!refreshing) {
    const exchange = () => fetch(`${SESSION}/refresh`, { method: "POST", headers: CSRF, credentials: "same-origin" })
      .then(async (reply) => {
        if (!reply.ok) throw new Error(`refresh answered ${reply.status}`);
        return reply.json();
      });
    const locked = navigator.locks ? navigator.locks.request("workpulse-refresh", exchange) : exchange();
    refreshing = locked
      .then((session) => { adopt(session); return token; })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

function toLogin() {
  token = null;
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/login?next=${next}`);
}

function safeNext() {
  const next = new URLSearchParams(location.search).get("next") || "/live";
  return next.startsWith("/") && !next.startsWith("//") ? next : "/live";
}

async function logIn(form) {
  const error = document.getElementById("login-error");
  error.hidden = true;
  const data = Object.fromEntries(new FormData(form).entries());
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const reply = await fetch(SESSION, {
      method: "POST",
      headers: { ...CSRF, "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(data),
    });
    if (!reply.ok) {
      const problem = await reply.json().catch(() => ({}));
      error.textContent = reply.status === 401
        ? "Workspace, email or password is not right."
        : (problem.message || `Sign-in failed (${reply.status}).`);
      error.hidden = false;
      return;
    }
    adopt(await reply.json());
    location.assign(safeNext());
  } catch {
    error.textContent = "The server could not be reached; retry in a moment.";
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

// The invite link's fragment (never sent to a server) names the organization and invite.
async function join(form, invite) {
  const error = document.getElementById("join-error");
  error.hidden = true;
  const data = { ...Object.fromEntries(new FormData(form).entries()), ...invite };
  const reply = await fetch(`${SESSION}/join`, {
    method: "POST",
    headers: { ...CSRF, "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(data),
  }).catch(() => null);
  if (!reply || !reply.ok) {
    const problem = reply ? await reply.json().catch(() => ({})) : {};
    error.textContent = reply ? (problem.message || `Joining failed (${reply.status}).`) : "The server could not be reached.";
    error.hidden = false;
    return;
  }
  adopt(await reply.json());
  location.assign("/live");
}

async function logOut() {
  await fetch(`${SESSION}/logout`, { method: "POST", headers: CSRF, credentials: "same-origin" }).catch(() => {});
  token = null;
  location.assign("/login");
}

// htmx: every request carries the in-memory token; a 401 refreshes it once, then reloads the fragments.
document.addEventListener("htmx:configRequest", (event) => {
  if (token) event.detail.headers.Authorization = `Bearer ${token}`;
});
// A request the person starts before the page holds its token waits for it.
let signalReady;
const tokenReady = new Promise((resolve) => { signalReady = resolve; });
document.addEventListener("htmx:confirm", (event) => {
  if (token) return;
  event.preventDefault();
  tokenReady.then(() => event.detail.issueRequest(true));
});
document.addEventListener("htmx:afterRequest", (event) => {
  if (event.detail.xhr && event.detail.xhr.status === 401) {
    refresh().then(() => htmx.trigger(body, "wp:resync")).catch(toLogin);
  }
});

// The live feed: resume after the last event id; a resync reloads the fragments.
let lastEventId = null;
let socket = null;
let backoff = 500;
// Rows to refresh: the members named by events, fetched in one request while none is in
// flight (the ones named meanwhile wait for it and go together), so a busy organization
// costs a request per round trip, not per event.
const dirtyRows = new Set();
let rowsInFlight = false;
const ROWS_PER_REQUEST = 100;

function refreshRows() {
  if (rowsInFlight || dirtyRows.size === 0) return;
  if (!document.getElementById("live-members")) { dirtyRows.clear(); return; }
  const ids = [];
  for (const userId of dirtyRows) {
    if (!document.getElementById(`member-${userId}`)) {
      // Someone the table does not show yet (a new member): the whole table again.
      dirtyRows.clear();
      htmx.trigger(body, "wp:resync");
      return;
    }
    ids.push(userId);
    if (ids.length === ROWS_PER_REQUEST) break;
  }
  for (const userId of ids) dirtyRows.delete(userId);
  rowsInFlight = true;
  fetchRows(ids)
    .catch(() => setTimeout(() => htmx.trigger(body, "wp:resync"), 2000))  // the whole table, in a moment
    .finally(() => { rowsInFlight = false; refreshRows(); });
}

// The rows are swapped here rather than by htmx's out-of-band swaps: htmx dispatches its
// swap events once per element swapped so far, per element (quadratic in a 100-row
// answer), which at 200 events/s kept the page's main thread from reading the feed.
async function fetchRows(ids, retried = false) {
  const reply = await fetch(`/ui/live/rows?ids=${ids.map(encodeURIComponent).join(",")}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (reply.status === 401 && !retried) {
    await refresh();
    return fetchRows(ids, true);
  }
  if (!reply.ok) throw new Error(`rows answered ${reply.status}`);
  const fresh = document.createElement("template");
  fresh.innerHTML = await reply.text();
  for (const row of fresh.content.querySelectorAll("tr[id^='member-']")) {
    const old = document.getElementById(row.id);
    if (old) { old.replaceWith(row); tick(row); }
  }
}

function refetchMember(userId) {
  dirtyRows.add(userId);
  refreshRows();
}

function onFrame(frame) {
  if (frame.id) lastEventId = frame.id;
  if (frame.event === "ready") { status("Connected: changes show as they happen."); backoff = 500; return; }
  if (frame.event === "ping") return;
  if (frame.event === "resync") { htmx.trigger(body, "wp:resync"); return; }
  const data = frame.data || {};
  if (typeof data.userId === "string") refetchMember(data.userId);
  body.dispatchEvent(new CustomEvent("wp:event", { detail: frame }));
  htmx.trigger(body, `wp:${frame.event}`);
}

function connect() {
  if (!token) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const after = lastEventId ? `?after=${encodeURIComponent(lastEventId)}` : "";
  socket = new WebSocket(`${scheme}//${location.host}/ws${after}`, ["workpulse.v1", `bearer.${token}`]);
  socket.addEventListener("message", (message) => {
    try { onFrame(JSON.parse(message.data)); } catch { /* a malformed frame is skipped */ }
  });
  socket.addEventListener("close", (closed) => {
    status("Reconnecting…");
    const again = () => setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
    if (closed.code === 4401) refresh().then(again).catch(toLogin);
    else again();
  });
}

// Tickers: elapsed time of running sessions, and how long ago the last activity came.
function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  return `${h}:${m}:${String(s % 60).padStart(2, "0")}`;
}

function ago(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

// Writes only the texts that changed: at 500 rows, rewriting every ticker each second (and
// after each swap) kept the page's main thread busy enough to queue the live feed.
function tick(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("[data-since]")) {
    const since = Date.parse(el.dataset.since);
    const text = Number.isNaN(since) ? null : clock((now - since) / 1000);
    if (text !== null && el.textContent !== text) el.textContent = text;
  }
  for (const el of root.querySelectorAll("[data-ago]")) {
    const at = Date.parse(el.dataset.ago);
    const text = Number.isNaN(at) ? null : ago((now - at) / 1000);
    if (text !== null && el.textContent !== text) el.textContent = text;
  }
}

// Swapped content ticks once per frame, however many rows a response swapped.
const swapped = new Set();
function tickSwapped(el) {
  if (!el) return;
  if (swapped.size === 0) {
    requestAnimationFrame(() => {
      for (const root of swapped) if (root.isConnected) tick(root);
      swapped.clear();
      drawCharts();
    });
  }
  swapped.add(el);
}

// Reports: the chart of a swapped-in report (uPlot, loaded by the Reports page only).
function drawCharts() {
  if (typeof window.uPlot !== "function") return;
  for (const figure of document.querySelectorAll("[data-chart]:not([data-drawn])")) {
    figure.dataset.drawn = "1";
    const data = JSON.parse(figure.dataset.chart);
    const xs = data.dates.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
    const hours = (list) => list.map((seconds) => Math.round((seconds / 3600) * 100) / 100);
    const plot = figure.querySelector(".plot");
    const options = {
      width: Math.max(280, Math.min(1100, figure.clientWidth - 16)),
      height: 260,
      scales: { x: { time: true } },
      series: [
        {},
        { label: "Active (h)", stroke: "#1a7f37", fill: "rgba(26, 127, 55, 0.15)", width: 2 },
        { label: "Idle (h)", stroke: "#9a6700", width: 2 },
      ],
      axes: [{}, { label: "hours" }],
    };
    new window.uPlot(options, [xs, hours(data.active), hours(data.idle)], plot);
  }
}

// Reports: the CSV needs the bearer token, so the module fetches it and saves the file.
async function downloadCsv(button) {
  const form = button.closest("form");
  const fields = new FormData(form);
  const query = new URLSearchParams({ startDate: fields.get("startDate"), endDate: fields.get("endDate") });
  if (fields.get("userId")) query.set("userId", fields.get("userId"));
  const note = document.getElementById("csv-status");
  note.textContent = "Preparing the CSV…";
  const reply = await fetch(`${button.dataset.csv}?${query}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!reply.ok) {
    const problem = await reply.json().catch(() => ({}));
    note.textContent = reply.status === 403
      ? "Only managers and admins export CSV (403)."
      : `The export failed (${reply.status}: ${problem.message || "error"}).`;
    return;
  }
  const disposition = reply.headers.get("Content-Disposition") || "";
  const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || "summaries.csv";
  const url = URL.createObjectURL(await reply.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  note.textContent = `Saved ${name}.`;
}

document.addEventListener("click", (event) => {
  if (event.target.closest("[data-reload]")) { location.reload(); return; }
  const button = event.target.closest("[data-csv]");
  if (button) downloadCsv(button).catch(() => { document.getElementById("csv-status").textContent = "The export failed."; });
});

// htmx dispatches these on the swapped-in elements (an out-of-band swap: once per element
// swapped so far in the response, so a Set keeps it one tick per element and frame).
document.addEventListener("htmx:afterSwap", (event) => tickSwapped(event.target));
document.addEventListener("htmx:oobAfterSwap", (event) => tickSwapped(event.target));

async function start() {
  await pageReady();
  const joining = document.getElementById("join-form");
  if (joining) {
    const given = new URLSearchParams(location.hash.slice(1));
    const invite = { organization_id: given.get("organization") || "", invite_token: given.get("invite") || "" };
    history.replaceState(null, "", location.pathname);  // the invite leaves the address bar and history
    if (given.get("email")) joining.elements.email.value = given.get("email");
    joining.addEventListener("submit", (event) => { event.preventDefault(); join(joining, invite); });
    return;
  }
  const form = document.getElementById("login-form");
  if (form) {
    form.addEventListener("submit", (event) => { event.preventDefault(); logIn(form); });
    return;
  }
  const logout = document.getElementById("logout");
  if (logout) logout.addEventListener("click", logOut);
  status("Signing in…");
  try {
    await refresh();
  } catch {
    toLogin();
    return;
  }
  signalReady();
  body.dataset.ready = "true";
  htmx.trigger(body, "wp:ready");
  setInterval(tick, 1000);
  connect();
}

start();
