"use strict";
// The dashboard page: polls the JSON view once a second and lays it out. Every
// value goes in as text (textContent), never as markup: job errors and arguments
// come from users' code.
const API = location.pathname.replace(/\/+$/, "") + "/api";
const POLL_MS = 1000;
const SVGNS = "http://www.w3.org/2000/svg";
let token = sessionStorage.getItem("liftline-dashboard-token") || "";
let timer = null;

const $ = (sel) => document.querySelector(sel);

function fmt(n, digits) {
  if (n === null || n === undefined) return "–";
  if (typeof n !== "number") return String(n);
  return n.toLocaleString("en-US", {maximumFractionDigits: digits === undefined ? 1 : digits});
}

function clock(t) {
  return t ? new Date(t * 1000).toLocaleTimeString("en-GB") : "–";
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function headers(extra) {
  const out = Object.assign({}, extra || {});
  if (token) out.Authorization = "Bearer " + token;
  return out;
}

// cells: [value | Node | {v, cls}] per column; numbers are right-aligned.
function fill(table, rows, cells, rowAttrs) {
  const body = table.tBodies[0];
  const out = rows.map((row) => {
    const tr = document.createElement("tr");
    if (rowAttrs) rowAttrs(tr, row);
    for (const cell of cells(row)) {
      let td;
      if (cell instanceof Node) { td = el("td"); td.append(cell); }
      else if (cell !== null && typeof cell === "object") { td = el("td", cell.v, cell.cls); }
      else { td = el("td", typeof cell === "number" ? fmt(cell, 3) : (cell ?? "–"),
                     typeof cell === "number" ? "n" : ""); }
      tr.append(td);
    }
    return tr;
  });
  body.replaceChildren(...out);
}

function definitions(dl, pairs) {
  const kids = [];
  for (const [k, v, cls] of pairs) { kids.push(el("dt", k)); kids.push(el("dd", v ?? "–", cls)); }
  dl.replaceChildren(...kids);
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function ago(seconds) {
  return seconds >= 120 ? `-${fmt(seconds / 60, 1)} min` : `-${fmt(seconds, 0)} s`;
}

// Lines of [[t, v], ...] up to `now`: the last maxS seconds, or since the oldest
// point if that is younger (at least a minute), so a fresh page is not a sliver.
function chart(svg, lines, now, maxS) {
  const w = Math.max(200, svg.clientWidth || 600), h = Math.max(100, svg.clientHeight || 150);
  const left = 48, right = 8, top = 8, bottom = 18;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const oldest = Math.min(now, ...lines.flat().map(([t]) => t));
  const windowS = Math.min(maxS, Math.max(60, now - oldest));
  const from = now - windowS;
  const shown = lines.map((pts) => pts.filter(([t]) => t >= from && t <= now + 5));
  const ymax = niceMax(Math.max(0, ...shown.flat().map(([, v]) => v)));
  const x = (t) => left + (w - left - right) * (t - from) / windowS;
  const y = (v) => top + (h - top - bottom) * (1 - v / ymax);
  const kids = [];
  for (const frac of [0, 0.5, 1]) {
    const yy = y(ymax * frac);
    kids.push(svgEl("line", {x1: left, x2: w - right, y1: yy, y2: yy, class: frac ? "grid" : "axis"}));
    kids.push(svgEl("text", {x: left - 4, y: yy + 4, "text-anchor": "end"}, fmt(ymax * frac, 1)));
  }
  for (const [label, t] of [[ago(windowS), from], [ago(windowS / 2), from + windowS / 2], ["now", now]]) {
    const anchor = label === "now" ? "end" : (t === from ? "start" : "middle");
    kids.push(svgEl("text", {x: x(t), y: h - 4, "text-anchor": anchor}, label));
  }
  let drawn = 0;
  shown.forEach((pts, i) => {
    if (!pts.length) return;
    const coords = pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    if (i === 0 && pts.length > 1) {
      const base = y(0).toFixed(1);
      kids.push(svgEl("polygon", {class: "area", points:
        `${x(pts[0][0]).toFixed(1)},${base} ${coords.join(" ")} ${x(pts[pts.length - 1][0]).toFixed(1)},${base}`}));
    }
    kids.push(svgEl("polyline", {class: "s" + i, points: coords.join(" ")}));
    const [lt, lv] = pts[pts.length - 1];
    kids.push(svgEl("circle", {class: "s" + i, cx: x(lt), cy: y(lv), r: 2.5}));
    drawn += pts.length;
  });
  svg.replaceChildren(...kids);
  svg.dataset.points = String(drawn);
}

function renderBanners(v) {
  const down = $("#unreachable");
  down.hidden = !v.unreachable.length;
  down.textContent = v.unreachable.map((u) => `${u.server} unreachable: ${u.error}`).join(" · ");
  const warn = $("#warnings");
  warn.hidden = !v.warnings.length;
  warn.replaceChildren(...v.warnings.map((w) => el("li", w)));
}

function renderCards(v) {
  const s = v.summary;
  $("#member-count").textContent = String(s.members);
  $("#partition-count").textContent = `${s.partitions} · R=${s.replicas}`;
  $("#writes-now").textContent = fmt(s.writes_per_s, 0);
  $("#lag-now").textContent = fmt(s.lag, 0);
  for (const k of ["queued", "running", "retrying", "dead"]) $("#jobs-" + k).textContent = fmt(s.jobs[k], 0);
}

function renderCluster(v) {
  fill($("#members"), v.members, (m) => [m.id, m.host, {v: String(m.pid), cls: "n"},
    m.heartbeat_age_s, m.primaries, m.standbys, m.keys], (tr, m) => { tr.dataset.member = m.id; });
  fill($("#partitions"), v.partitions, (p) => {
    const notes = el("span");
    notes.append(...p.flags.map((f) => el("span", f, "flag")));
    return [p.partition, p.primary ?? {v: "none", cls: "down"}, p.standbys.join(", ") || "–",
      p.epoch, p.applied, p.flushed, p.tail, p.lag, {v: p.replica_lags.join(" ") || "–", cls: "n"},
      p.flush_age_s, p.retention_margin, p.keys, notes];
  }, (tr, p) => {
    tr.dataset.partition = String(p.partition);
    tr.className = p.primary === null ? "bad" : (p.flags.length ? "warn" : "");
  });
}

function renderAutoscaler(v) {
  const a = v.autoscaler;
  const last = $("#autoscaler-last"), change = $("#autoscaler-change");
  if (!a) {
    last.textContent = "no autoscaler has run for this cluster";
    change.textContent = "";
    fill($("#autoscaler-changes"), [], () => []);
    chart($("#chart-workers"), [[], []], v.at, 600);
    return;
  }
  const d = a.last || {};
  last.className = "";
  last.textContent = `Last decision (${a.backend || "?"}, ${fmt(a.age_s, 1)} s ago): ${d.action} — ` +
    `backlog ${fmt(d.backlog, 0)} (streams ${fmt(d.stream_backlog, 0)}, jobs ${fmt(d.job_backlog, 0)}), ` +
    `current ${d.current}, desired ${d.desired}: ${d.reason}`;
  change.textContent = a.change ? `Last change: ${a.change.action} ${a.change.current} → ` +
    `${a.change.desired} at ${clock(a.change.at)}: ${a.change.reason}` : "";
  fill($("#autoscaler-changes"), a.changes, (c) => [clock(c.t), c.action, c.backlog, c.current, c.desired]);
  chart($("#chart-workers"), [a.series.current, a.series.desired], v.at, 600);
}

function renderServers(v) {
  const r = v.servers.rabbitmq, d = v.servers.redis;
  const up = (ok) => ok ? ["reachable", "ok"] : ["unreachable", "down"];
  definitions($("#rabbitmq"), [["State", ...up(r.reachable)], ["URL", r.url],
    ["Version", r.version ? `${r.product || "RabbitMQ"} ${r.version}` : null],
    ["Cluster name", r.cluster_name], ["Management API", r.management]]);
  fill($("#rabbitmq-nodes"), r.nodes || [], (n) => [n.name,
    n.running ? {v: "yes", cls: "ok"} : {v: "no", cls: "down"},
    n.mem_used === undefined || n.mem_used === null ? null : n.mem_used / 1048576,
    n.disk_free === undefined || n.disk_free === null ? null : n.disk_free / 1073741824,
    n.fd_used === undefined || n.fd_used === null ? null : `${n.fd_used} / ${n.fd_total}`,
    n.uptime ? n.uptime / 3600000 : null,
    [n.mem_alarm ? "memory" : "", n.disk_free_alarm ? "disk" : ""].filter(Boolean).join(", ") || "none"]);
  definitions($("#redis"), [["State", ...up(d.reachable)], ["URL", d.url],
    ["Version", d.redis_version], ["Role", d.role], ["Mode", d.redis_mode],
    ["Memory used", d.used_memory_human], ["Clients", d.connected_clients],
    ["Replicas", d.connected_slaves], ["Append-only file", d.aof_enabled === undefined ? null : (d.aof_enabled ? "on" : "off")],
    ["Uptime (h)", d.uptime_in_seconds === undefined ? null : fmt(d.uptime_in_seconds / 3600, 1)]]);
}

function renderJobs(v) {
  const j = v.jobs;
  fill($("#job-names"), j.names, (n) => [n.name, n.queued, n.running, n.retrying ?? 0, n.succeeded,
    n.failed_attempts, n.dead, n.rate_per_s]);
  $("#dead-count").textContent = j.dead_in_queue === null ? "" :
    `(${fmt(j.dead_in_queue, 0)} in the dead-letter queue${j.dead_in_queue > j.dead.length ? `, first ${j.dead.length} shown` : ""})`;
  fill($("#dead"), j.dead, (d) => {
    const button = el("button", "Replay", "replay");
    button.type = "button";
    button.addEventListener("click", () => replay(d.id, button));
    return [{v: d.id, cls: "code"}, d.job, d.attempts, clock(d.dead_at), {v: d.error, cls: "code"},
      {v: d.args ?? "–", cls: "code"}, button];
  }, (tr, d) => { tr.dataset.job = d.id; });
  fill($("#watched"), j.watched, (w) => [{v: w.id, cls: "code"}, w.name,
    {v: w.state, cls: "state state-" + w.state}, w.attempt, {v: w.result ?? "–", cls: "code"},
    {v: w.error ?? "–", cls: "code"}], (tr, w) => { tr.dataset.job = w.id; tr.dataset.state = w.state; });
}

function render(v) {
  $("#cluster").textContent = v.cluster;
  $("#status-line").textContent = `updated ${clock(v.at)} (read in ${fmt(v.took_s, 2)} s)`;
  document.body.dataset.updated = String(v.at);
  renderBanners(v);
  renderCards(v);
  chart($("#chart-writes"), [v.series.writes_per_s], v.at, 600);
  chart($("#chart-lag"), [v.series.lag], v.at, 600);
  renderCluster(v);
  renderAutoscaler(v);
  renderServers(v);
  renderJobs(v);
}

function askForToken(message) {
  const form = $("#token-form");
  form.hidden = false;
  $("#status-line").textContent = message;
  $("#token").focus();
}

async function poll() {
  timer = null;
  let next = POLL_MS;
  try {
    const answer = await fetch(API + "/view", {headers: headers(), cache: "no-store"});
    if (answer.status === 401) {
      askForToken(token ? "that token was refused" : "a token is needed to see the cluster");
      return;  // polling starts again once a token is given
    }
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    $("#token-form").hidden = true;
    render(await answer.json());
  } catch (err) {
    $("#status-line").textContent = `the dashboard's server does not answer (${err.message}); retrying`;
    next = 3 * POLL_MS;
  }
  timer = setTimeout(poll, next);
}

async function replay(jobId, button) {
  button.disabled = true;
  const message = $("#replay-message");
  message.textContent = `replaying ${jobId}…`;
  try {
    const answer = await fetch(API + "/replay", {method: "POST", cache: "no-store",
      headers: headers({"Content-Type": "application/json"}), body: JSON.stringify({job_id: jobId})});
    const body = await answer.json().catch(() => ({}));
    if (answer.ok) message.textContent = `replayed ${body.replayed.join(", ")}: see "Replayed from this page"`;
    else if (answer.status === 401) { message.textContent = "replay refused: a token is needed"; askForToken("a token is needed"); }
    else message.textContent = `replay of ${jobId} failed: ${body.message || answer.status}`;
  } catch (err) {
    message.textContent = `replay of ${jobId} failed: ${err.message}`;
  }
  button.disabled = false;
  if (timer !== null) { clearTimeout(timer); poll(); }
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("liftline-dashboard-token", token);
  if (timer !== null) clearTimeout(timer);
  poll();
});

poll();
