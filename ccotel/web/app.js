// ccotel's page: reads /api/* and renders; refreshes itself every REFRESH ms without reloading.
"use strict";
const REFRESH = 5000;
const COLORS = ["--c0", "--c1", "--c2", "--c3", "--c4", "--c5", "--c6", "--c7"];
const FOLD_ABOVE = 150; // a waterfall with more spans opens with its turns collapsed
const state = { by: "model", sort: "last", desc: true, project: "", day: "", q: "" };
const folds = new Map(); // session id -> Set of collapsed span ids (kept across refreshes)
let timer = null;
let lastSession = "";

const $ = (s, el = document) => el.querySelector(s);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const usd = (x) => x == null ? "–" : "$" + (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toFixed(4));
const usdExact = (x) => "$" + (x ?? 0).toFixed(6);
const int = (x) => (x ?? 0).toLocaleString("en-US");
const tok = (x) => x == null ? "" : x >= 1e9 ? (x / 1e9).toFixed(2) + "B" : x >= 1e6 ? (x / 1e6).toFixed(2) + "M" : x >= 1e4 ? (x / 1e3).toFixed(1) + "k" : int(x);
const two = (big, bu, small, su) => big + bu + (small ? " " + small + su : "");
const dur = (s) => s == null ? "–" : s < 1 ? Math.round(s * 1000) + " ms" : s < 60 ? s.toFixed(1) + " s"
  : s < 3600 ? two(Math.floor(s / 60), "m", Math.floor(s % 60), "s") : s < 86400 ? two(Math.floor(s / 3600), "h", Math.floor((s % 3600) / 60), "m")
  : two(Math.floor(s / 86400), "d", Math.floor((s % 86400) / 3600), "h");
const when = (t) => t == null ? "–" : new Date(t * 1000).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const color = (i) => `var(${COLORS[i % COLORS.length]})`;
const shortModel = (m) => (m || "").replace(/^claude-/, "").replace(/-\d{8}$/, "");

async function api(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) {
    let msg = "HTTP " + r.status;
    try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(path + ": " + msg);
  }
  return r.json();
}

function gauge(label, value, budget, id, sub) {
  const pct = budget ? (value / budget) * 100 : 0;
  const cls = !budget ? "" : pct >= 100 ? "bad" : pct >= 80 ? "warn" : "";
  return `<div class="card" id="${id}"><div class="label">${label}</div><div class="big" data-usd="${value}">${usd(value)}</div>
    ${budget ? `<div class="bar ${cls}"><i style="width:${Math.min(100, pct)}%"></i></div><div class="muted">${Math.round(pct)}% of ${usd(budget)} budget</div>` : `<div class="muted">no budget set</div>`}
    ${sub ? `<div class="muted">${sub}</div>` : ""}</div>`;
}

// Plan limits (from Claude Code's status line: `ccotel statusline install`) and the active
// 5-hour billing block with its projection.
function planCard(p) {
  if (!p) return "";
  const bar = (name, w) => {
    if (!w) return `<div class="muted">${name}: no report yet</div>`;
    const pct = w.used_ratio * 100, cls = pct >= 100 ? "bad" : pct >= 80 ? "warn" : "";
    const reset = w.resets_at == null ? "" : w.reset ? " · reset since" : ` · resets ${when(w.resets_at)}`;
    return `<div class="plan-row" data-window="${name}"><span>${name}</span> <b>${Math.round(pct)}%</b><span class="muted">${reset}</span>
      <div class="bar ${cls}"><i style="width:${Math.min(100, pct)}%"></i></div></div>`;
  };
  const k = p.block;
  const block = k ? `<div id="block">block <b data-usd="${k.cost_usd}">${usd(k.cost_usd)}</b>, ${dur(k.seconds_left)} left` +
    (k.projected_cost_usd != null ? `<div class="muted" id="projection">projected ${usd(k.projected_cost_usd)} at ${when(k.end)}</div>` : "") + "</div>"
    : `<div class="muted" id="block">no active 5-hour block</div>`;
  const none = !p.windows["5h"] && !p.windows["7d"];
  return `<div class="card" id="plan"><div class="label">Plan limits</div>${bar("5h", p.windows["5h"])}${bar("7d", p.windows["7d"])}${block}` +
    (none ? `<div class="muted">run <code>ccotel statusline install</code> to see them</div>` : "") + "</div>";
}

// Round axis ticks: steps of 1, 2, 2.5 or 5 times a power of ten.
function niceStep(top, n = 4) {
  const raw = top / n, p = 10 ** Math.floor(Math.log10(raw)), f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
}
function tickLabel(v, step) {
  if (v === 0) return "$0";
  let d = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
  if (Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) > 1e-6) d += 1;
  return "$" + v.toFixed(d);
}

function stacked(data, w = 720, h = 190) {
  const n = data.buckets.length, pad = { l: 52, r: 6, t: 10, b: 20 };
  const tot = data.buckets.map((_, i) => data.series.reduce((a, s) => a + s.cost_usd[i], 0));
  const budget = data.budget_usd || 0;
  const top = Math.max(...tot, budget) || 1; // the axis always holds the budget line
  const step = niceStep(top), max = Math.ceil((top * 1.04) / step) * step;
  const bw = (w - pad.l - pad.r) / n, y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
  let out = `<svg class="chart" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img" data-max="${max}" data-step="${step}">`;
  for (let v = 0; v <= max + step / 2; v += step) {
    out += `<line x1="${pad.l}" x2="${w - pad.r}" y1="${y(v)}" y2="${y(v)}" stroke="var(--line)"/><text class="tick" x="${pad.l - 4}" y="${y(v) + 3}" text-anchor="end">${tickLabel(v, step)}</text>`;
  }
  data.buckets.forEach((b, i) => {
    let acc = 0;
    data.series.forEach((s, j) => {
      const v = s.cost_usd[i]; if (!v) return;
      out += `<rect x="${pad.l + i * bw + 1}" width="${Math.max(1, bw - 2)}" y="${y(acc + v)}" height="${y(acc) - y(acc + v)}" fill="${color(j)}"><title>${esc(s.name)}: ${usd(v)}</title></rect>`;
      acc += v;
    });
    const every = data.bucket === "hour" ? 6 : 5;
    if (i % every === 0) {
      const lab = data.bucket === "hour" ? new Date(b * 1000).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }) : b.slice(5);
      out += `<text x="${pad.l + i * bw + bw / 2}" y="${h - 5}" text-anchor="middle">${lab}</text>`;
    }
  });
  if (budget) {
    out += `<line class="budget" data-usd="${budget}" x1="${pad.l}" x2="${w - pad.r}" y1="${y(budget)}" y2="${y(budget)}" stroke="var(--bad)" stroke-dasharray="4 3"><title>budget ${usd(budget)}</title></line>`
      + `<text class="budget" x="${pad.l + 4}" y="${y(budget) - 3}" text-anchor="start">budget ${usd(budget)}</text>`;
  }
  return out + "</svg>" + `<div class="legend">${data.series.slice(0, 10).map((s, j) => `<span><i style="background:${color(j)}"></i>${esc(data.by === "model" ? shortModel(s.name) : s.name)} ${usd(s.cost_usd.reduce((a, b) => a + b, 0))}</span>`).join("")}</div>`;
}

const projectNames = (s) => s.projects.map((p) => p.name);

function sessionRows(list) {
  return list.map((s) => `<tr data-id="${esc(s.id)}" data-end="${s.end}">
    <td><a class="mono" href="#/session/${encodeURIComponent(s.id)}">${esc(s.id.slice(0, 8))}</a></td>
    <td class="proj" title="${esc(projectNames(s).join(", "))}">${esc(projectNames(s).join(", "))}</td><td>${when(s.start)}</td><td class="last">${when(s.end)}</td>
    <td class="num" title="wall clock ${dur(s.wall_s)}">${dur(s.active_s)}</td>
    <td>${s.models.map((m) => esc(shortModel(m))).join(", ")}</td>
    <td class="num cost" data-usd="${s.cost_usd}">${usd(s.cost_usd)}</td><td class="num" data-tokens="${s.tokens}">${tok(s.tokens)}</td>
    <td class="num">${int(s.tool_calls)}</td><td class="num ${s.tool_errors ? "err" : ""}">${int(s.tool_errors)}</td></tr>`).join("");
}

// --- the live board: every session of the last live_window, the ones waiting for you first.
// Fed by /api/live/events (server-sent events); polls /api/live when no stream is to be had.
const LIVE_POLL = 2000, LIVE_RETRY_STREAM = 30000;
const live = { data: null, offset: 0, es: null, poll: null, tick: null, retry: 0 };
const liveNow = () => Date.now() / 1000 + live.offset;
const ldur = (s) => { // a running time: 42s, 3m 07s, 2h 05m, 1d 04h
  s = Math.max(0, Math.floor(s)); const p = (n) => String(n).padStart(2, "0");
  return s < 60 ? s + "s" : s < 3600 ? `${Math.floor(s / 60)}m ${p(s % 60)}s` : s < 86400 ? `${Math.floor(s / 3600)}h ${p(Math.floor(s % 3600 / 60))}m` : `${Math.floor(s / 86400)}d ${p(Math.floor(s % 86400 / 3600))}h`;
};
const LEVEL = { ok: "", amber: "warn", red: "bad" };

function liveStart() {
  if (!live.tick) live.tick = setInterval(liveTimers, 1000);
  if (live.es || live.poll) return;
  if (!window.EventSource || Date.now() < live.retry) { livePoll(); return; }
  const es = live.es = new EventSource("/api/live/events");
  es.onmessage = (e) => liveTake(JSON.parse(e.data));
  es.onerror = () => { // a closed stream (503: too many open) is not retried by the browser
    if (es.readyState === EventSource.CLOSED) { live.es = null; live.retry = Date.now() + LIVE_RETRY_STREAM; livePoll(); }
  };
}
function livePoll() {
  const once = () => api("/api/live").then(liveTake).catch(() => {}).finally(() => {
    if (!live.poll) return;
    if (Date.now() >= live.retry) { live.poll = null; liveStart(); } else live.poll = setTimeout(once, LIVE_POLL);
  });
  live.poll = setTimeout(once, 0);
}
function liveStop() {
  if (live.es) live.es.close();
  clearTimeout(live.poll); clearInterval(live.tick);
  live.es = live.poll = live.tick = null;
}
function liveTake(d) {
  live.data = d; live.offset = d.now - Date.now() / 1000;
  liveRender();
}

function liveState(x) {
  const since = `<b class="timer" data-since="${x.state_since}">${ldur(liveNow() - x.state_since)}</b>`;
  if (x.state === "waiting") return `<span class="pill"><span class="label">waiting for you</span> ${since}${x.may_have_exited ? ' <span class="maybe" title="Claude Code wrote nothing more after its last answer: the session may also have been closed">(or closed)</span>' : ""}</span>`;
  if (x.state === "tool" && x.tool) {
    const more = x.tool.running > 1 ? ` <span class="muted">+${x.tool.running - 1}</span>` : "";
    return `<span class="pill" title="running, or waiting for your permission to run">⚙ ${esc(x.tool.name)}${more} <b class="timer" data-since="${x.tool.since}">${ldur(liveNow() - x.tool.since)}</b></span>`;
  }
  return `<span class="pill">${x.state} ${since}</span>`;
}
function liveContext(x) {
  if (x.context_used_ratio == null) return `<span class="ctx muted">context –</span>`;
  const pct = Math.round(x.context_used_ratio * 100), how = x.context_source === "statusline" ? "reported by the status line" : "estimated from the last request";
  return `<span class="ctx" data-level="${x.context_level}" title="${pct}% of a ${tok(x.context_window)} context window (${how})"><span class="bar ${LEVEL[x.context_level] || ""}"><i style="width:${Math.min(100, pct)}%"></i></span>${pct}%${x.context_source === "statusline" ? "" : "<small>~</small>"}</span>`;
}
function liveRow(x) {
  const subs = x.subagents.map((a) => `<span class="sub st-${a.state}" data-agent="${esc(a.id)}">${esc(a.type || "agent")} ${liveState(a)}${a.context_used_ratio != null ? ` <span class="muted">${Math.round(a.context_used_ratio * 100)}%</span>` : ""}</span>`).join("");
  return `<a class="live-row st-${x.state}" href="#/session/${encodeURIComponent(x.id)}" data-id="${esc(x.id)}" data-state="${x.state}">
    <span class="state">${liveState(x)}</span>
    <span class="who"><span class="mono">${esc(x.id.slice(0, 8))}</span> <b>${esc(x.project)}</b>${x.branch ? ` <span class="muted">${esc(x.branch)}</span>` : ""} <span class="muted">${esc(shortModel(x.model))}</span></span>
    ${liveContext(x)}
    <span class="num cost" data-usd="${x.cost_usd}" title="cost so far">${usd(x.cost_usd)}</span>
    <span class="num rate" data-usd="${x.cost_rate_usd_per_hour}" title="cost per hour over the last 15 minutes">${usd(x.cost_rate_usd_per_hour)}/h</span>
    <span class="last muted">${x.last_tool ? esc(x.last_tool) + " · " : ""}<span class="timer" data-since="${x.last_activity}">${ldur(liveNow() - x.last_activity)}</span> ago</span>
    ${subs ? `<span class="subs">${subs}</span>` : ""}</a>`;
}
function liveRender() {
  const el = $("#live"), d = live.data;
  if (!el || !d) return;
  const rows = d.sessions, waiting = rows.filter((x) => x.state === "waiting").length;
  document.title = waiting ? `(${waiting}) waiting · ccotel` : "ccotel";
  $("#live-count", el).innerHTML = !d.ready ? "catching up…" : `${rows.length} in the last ${ldur(d.live_window)}` + (waiting ? ` · <span class="waiting-count">${waiting} waiting for you</span>` : "");
  $("#live-rows", el).innerHTML = rows.map(liveRow).join("") || `<p class="muted small">No Claude Code session wrote a line in the last ${ldur(d.live_window)}.</p>`;
  el.dataset.ready = "1";
}
function liveTimers() {
  if (!live.data) return;
  for (const t of document.querySelectorAll("#live .timer")) t.textContent = ldur(liveNow() - +t.dataset.since);
}
// What the spend bought, per project (all time): its own section at the end of the overview.
function bought(rows) {
  if (!$("#bought")) $("#overview").insertAdjacentHTML("beforeend", `<section id="bought"><h2>What the spend bought <span class="muted">all time, by project</span></h2>
    <div class="tablewrap"><table><thead><tr><th>project</th><th class="num">cost</th><th class="num">commits</th><th class="num">lines + / −</th><th class="num">pull requests</th>
    <th class="num">cost per commit</th><th class="num">cost per 100 lines</th></tr></thead><tbody></tbody></table></div></section>`);
  $("#bought tbody").innerHTML = (rows || []).map((r) => `<tr data-project="${esc(r.project)}"><td>${esc(r.project)}</td>
    <td class="num" data-usd="${r.cost_usd}">${usd(r.cost_usd)}</td><td class="num">${int(r.commits)}</td><td class="num">+${int(r.lines_added)} / −${int(r.lines_removed)}</td>
    <td class="num">${int(r.pull_requests)}</td><td class="num per-commit">${usd(r.cost_per_commit_usd)}</td><td class="num per-lines">${usd(r.cost_per_100_lines_usd)}</td></tr>`).join("")
    || `<tr><td colspan="7" class="muted">nothing yet</td></tr>`;
}

async function overview() {
  const qs = new URLSearchParams({ sort: (state.desc ? "" : "-") + state.sort, limit: "100" });
  if (state.project) qs.set("project", state.project);
  if (state.day) qs.set("day", state.day);
  if (state.q) qs.set("q", state.q);
  const [sum, hourly, daily, sess, plan] = await Promise.all([
    api("/api/summary"), api(`/api/spend?by=${state.by}&bucket=hour`), api(`/api/spend?by=${state.by}&bucket=day`), api("/api/sessions?" + qs),
    api("/api/plan").catch(() => null),
  ]);
  health(sum.health);
  const view = $("#view");
  if (!$("#overview", view)) {
    view.innerHTML = `<div id="overview"><section id="live"><h2>Live sessions <span class="muted" id="live-count">loading…</span></h2><div id="live-rows"></div></section><div class="cards" id="now"></div>
      <div class="charts"><section><h2>Spend per hour, last 48 h <span class="toggle" id="by"><button data-by="model">by model</button><button data-by="project">by project</button></span></h2><div id="hourly"></div></section>
      <section><h2>Spend per day, last 30 days</h2><div id="daily"></div></section></div>
      <section><h2>Sessions <span class="muted" id="count"></span></h2>
      <div class="filters"><input id="q" placeholder="session id…" size="14"><input id="project" placeholder="project" size="12"><input id="day" type="date"></div>
      <div class="tablewrap"><table id="sessions"><thead><tr>
        <th>session</th><th>projects</th><th data-sort="start">start</th><th data-sort="last">last activity</th><th class="num" data-sort="active" title="time with activity; pauses longer than the session idle time are left out">active</th><th>models</th>
        <th class="num" data-sort="cost">cost</th><th class="num" data-sort="tokens">tokens</th><th class="num">tools</th><th class="num">errors</th></tr></thead><tbody></tbody></table></div></section></div>`;
    $("#by", view).onclick = (e) => { if (e.target.dataset.by) { state.by = e.target.dataset.by; refresh(); } };
    $("#sessions thead", view).onclick = (e) => {
      const k = e.target.closest("th")?.dataset.sort; if (!k) return;
      state.desc = state.sort === k ? !state.desc : true; state.sort = k; refresh();
    };
    for (const id of ["q", "project", "day"]) $("#" + id, view).oninput = (e) => { state[id] = e.target.value.trim(); refresh(); };
    liveRender();
  }
  liveStart();
  const b = sum.budgets;
  $("#now").innerHTML =
    gauge("Last 24 hours", sum.last_24h_usd, b.daily_usd, "day", `today (since midnight) <span data-usd="${sum.today.cost_usd}">${usd(sum.today.cost_usd)}</span>`) +
    gauge("Last hour", sum.this_hour_usd, b.hourly_usd, "hour", `burn rate ${usd(sum.burn_rate_usd_per_hour)}/h (last 15 min)`) +
    planCard(plan) +
    `<div class="card" id="month"><div class="label">This month</div><div class="big" data-usd="${sum.this_month_usd}">${usd(sum.this_month_usd)}</div><div class="muted">all time <span id="all-time" data-usd="${sum.all_time.cost_usd}">${usd(sum.all_time.cost_usd)}</span> · ${int(sum.all_time.sessions)} sessions</div></div>` +
    `<div class="card" id="active"><div class="label">Active sessions</div><div class="big">${sum.active_sessions}</div><div class="muted">${sum.top_session_today ? `top today: <a class="mono" href="#/session/${encodeURIComponent(sum.top_session_today.id)}">${esc(sum.top_session_today.id.slice(0, 8))}</a> ${usd(sum.top_session_today.cost_usd)}` : "no spend today"}</div></div>` +
    `<div class="card" id="today-models"><div class="label">Today by model</div>${sum.today.by_model.slice(0, 4).map((m) => `<div>${esc(shortModel(m.model))} <span class="num" style="float:right">${usd(m.cost_usd)}</span></div>`).join("") || '<div class="muted">nothing yet</div>'}</div>`;
  for (const btn of document.querySelectorAll("#by button")) btn.classList.toggle("on", btn.dataset.by === state.by);
  bought(sum.bought_by_project);
  $("#hourly").innerHTML = stacked(hourly);
  $("#daily").innerHTML = stacked(daily, 480);
  $("#count").textContent = `${sess.sessions.length} of ${int(sess.total)}`;
  $("#sessions tbody").innerHTML = sessionRows(sess.sessions) || `<tr><td colspan="10" class="muted">no sessions</td></tr>`;
  for (const th of document.querySelectorAll("#sessions th[data-sort]")) {
    const on = th.dataset.sort === state.sort;
    th.textContent = th.textContent.replace(/ [▲▼]$/, "") + (on ? (state.desc ? " ▼" : " ▲") : "");
    th.classList.toggle("sorted", on);
    th.setAttribute("aria-sort", on ? (state.desc ? "descending" : "ascending") : "none");
  }
}

// The session axis leaves out pauses longer than the idle gap (a resumed session's weeks), each
// shown as a thin break; a turn's own spans are drawn to the turn's scale.
function sessionAxis(spans, idle) {
  const iv = spans.filter((x) => x.kind === "turn" || (x.kind !== "session" && !x.turn && x.depth === 1))
    .map((x) => [x.start, x.end]).sort((a, b) => a[0] - b[0]);
  const root = spans.find((x) => x.kind === "session");
  if (!iv.length && root) iv.push([root.start, root.end]);
  const segs = [];
  for (const [a, b] of iv) {
    const last = segs[segs.length - 1];
    if (last && a - last[1] <= idle) last[1] = Math.max(last[1], b); else segs.push([a, b]);
  }
  const active = segs.reduce((t, [a, b]) => t + (b - a), 0) || 1;
  const gap = segs.length > 1 ? active * 0.02 : 0, total = active + gap * (segs.length - 1);
  const offs = []; let o = 0;
  for (const [a, b] of segs) { offs.push(o); o += b - a + gap; }
  const at = (t) => { // where t sits on the axis, 0..1; a time in a pause sits on its break
    for (let i = 0; i < segs.length; i++) {
      const [a, b] = segs[i];
      if (t < a) return (offs[i] - (i ? gap / 2 : 0)) / total;
      if (t <= b) return (offs[i] + t - a) / total;
    }
    return 1;
  };
  return { at, breaks: segs.length - 1 };
}

function waterfall(s) {
  const idle = s.idle_gap_s || 600, axis = sessionAxis(s.spans, idle);
  const byId = new Map(s.spans.map((x) => [x.id, x]));
  return s.spans.map((x) => {
    const failed = !!x.error, t = x.turn && byId.get(x.turn);
    let left, right;
    if (t) { const len = Math.max(1e-3, t.end - t.start); left = (x.start - t.start) / len; right = (x.end - t.start) / len; }
    else { left = axis.at(x.start); right = axis.at(x.end); }
    left = Math.max(0, Math.min(1, left)); right = Math.max(left, Math.min(1, right));
    const label = x.kind === "tool" ? x.tool : x.kind === "model" ? shortModel(x.model) : x.name;
    const fold = x.children ? `<button class="fold" data-fold="${x.id}" aria-label="collapse or expand">▾</button>` : `<span class="fold"></span>`;
    return `<tr class="${x.kind}${failed ? " failed" : ""}${t ? " inturn" : ""}" data-span="${x.id}" data-parent="${x.parent || ""}" data-depth="${x.depth}" data-children="${x.children}" title="${esc(x.name)}${failed ? " — " + esc(x.error) : ""}">
      <td class="name" style="padding-left:${0.3 + x.depth * 1.1}rem">${fold}<span class="muted">${x.kind}</span> ${esc(label)}${failed ? ' <span class="badge err">failed</span>' : ""}${x.attrs["ccotel.tool.interrupted"] ? ' <span class="badge muted">no result</span>' : ""}</td>
      <td class="track"><span class="seg" style="left:${left * 100}%;width:${(right - left) * 100}%"></span></td>
      <td class="num d">${dur(x.duration_s)}</td><td class="num t" data-tokens="${x.tokens ?? ""}">${x.tokens != null ? tok(x.tokens) : ""}</td><td class="num c" data-usd="${x.cost_usd ?? ""}">${x.cost_usd != null ? usd(x.cost_usd) : ""}</td></tr>`;
  }).join("");
}

function applyFolds(id) {
  const closed = folds.get(id) || new Set();
  let cut = Infinity;
  for (const tr of document.querySelectorAll("#waterfall tr")) {
    const d = +tr.dataset.depth;
    if (d > cut) { tr.hidden = true; continue; }
    cut = Infinity; tr.hidden = false;
    const b = $("button.fold", tr), shut = closed.has(tr.dataset.span);
    if (b) { b.textContent = shut ? "▸" : "▾"; b.setAttribute("aria-expanded", String(!shut)); }
    if (shut) cut = d;
  }
  const shown = document.querySelectorAll("#waterfall tr:not([hidden])").length;
  $("#wf-count").textContent = `${shown} of ${document.querySelectorAll("#waterfall tr").length} spans shown`;
}

async function session(id) {
  const s = await api("/api/sessions/" + encodeURIComponent(id));
  const key = JSON.stringify(s);
  if (key === lastSession && $("#waterfall")) return; // nothing new: keep the view as it is
  lastSession = key;
  if (!folds.has(s.id)) folds.set(s.id, new Set(s.spans.length > FOLD_ABOVE ? s.spans.filter((x) => x.kind === "turn" && x.children).map((x) => x.id) : []));
  const proj = s.projects.map((p) => `${esc(p.name)}${s.projects.length > 1 ? ` <span class="muted">${usd(p.cost_usd)}</span>` : ""}`).join(", ");
  const resumed = s.wall_s != null && s.wall_s - s.active_s > 3600;
  $("#view").innerHTML = `<p><a href="#/">← all sessions</a></p>
    <section id="session-head"><h2 class="mono">${esc(s.id)}</h2><div class="kv">
      <span class="muted">project</span><span>${proj}${s.branch ? ` <span class="muted">(${esc(s.branch)})</span>` : ""}</span>
      <span class="muted">when</span><span>${when(s.start)} – ${when(s.end)}</span>
      <span class="muted">active</span><span id="session-active" data-s="${s.active_s}">${dur(s.active_s)}${resumed ? ` <span class="muted">over ${dur(s.wall_s)} of wall clock (pauses over ${dur(s.idle_gap_s)} left out)</span>` : ""}</span>
      <span class="muted">models</span><span>${s.models.map((m) => esc(m)).join(", ")}</span>
      <span class="muted">cost</span><span id="session-cost" data-usd="${s.cost_usd}">${usdExact(s.cost_usd)}</span>
      <span class="muted">tokens</span><span id="session-tokens" data-tokens="${s.tokens}">${int(s.tokens)} = ${int(s.uncached_input_tokens)} input · ${int(s.cache_read_tokens)} cache read · ${int(s.cache_write_tokens)} cache write · ${int(s.output_tokens)} output (${int(s.requests)} requests)</span>
      <span class="muted">tools</span><span>${int(s.tool_calls)} calls${s.tool_errors ? `, <span class="err">${s.tool_errors} failed</span>` : ""}</span>
      <span class="muted">bought</span><span id="session-bought">${int(s.commits)} commits · +${int(s.lines_added)} / −${int(s.lines_removed)} lines · ${int(s.pull_requests)} pull requests · <span class="per-commit">${usd(s.cost_per_commit_usd)}</span> per commit · <span class="per-lines">${usd(s.cost_per_100_lines_usd)}</span> per 100 lines</span>
      <span class="muted">trace</span><span><a id="trace-link" href="${esc(s.trace_url)}" target="_blank" rel="noopener">${esc(s.trace_id)}</a> <span class="muted">(opens the trace UI)</span></span>
    </div>${s.content_captured ? "" : '<p class="muted">No prompt, command or file content is shown: content capture is off.</p>'}</section>
    <section><h2>Waterfall <span class="muted" id="wf-count"></span><span class="toggle"><button id="wf-collapse">collapse turns</button><button id="wf-expand">expand all</button></span></h2>
    <p class="muted small">Turns sit on the session's time line, pauses over ${dur(s.idle_gap_s)} cut out; the calls inside a turn are drawn to that turn's scale.</p>
    <div class="tablewrap"><table class="wf" id="waterfall"><tbody>${waterfall(s)}</tbody></table></div></section>`;
  const closed = folds.get(s.id);
  $("#waterfall").onclick = (e) => {
    const b = e.target.closest("button.fold"); if (!b) return;
    const sid = b.dataset.fold; if (closed.has(sid)) closed.delete(sid); else closed.add(sid);
    applyFolds(s.id);
  };
  $("#wf-collapse").onclick = () => { for (const x of s.spans) if (x.kind === "turn" && x.children) closed.add(x.id); applyFolds(s.id); };
  $("#wf-expand").onclick = () => { closed.clear(); applyFolds(s.id); };
  applyFolds(s.id);
  api("/api/summary").then((x) => health(x.health)).catch(() => {});
}

// The header: ingest health, and the trace export and metrics push states. Red only for a
// collector the user configured (or that answered) failing; "waiting" is not an alarm.
function health(h) {
  const el = $("#health"), parts = [h.ok ? "up" : "catching up", `${int(h.files)} files`, `lag ${dur(h.lag_seconds)}`];
  let level = "muted";
  if (h.parse_errors > 0) { parts.push(`${int(h.parse_errors)} malformed lines skipped`); level = "warn"; }
  for (const [name, x] of [["traces", h.traces], ["metrics push", h.metrics_push]]) {
    if (!x || x.state === "off") continue;
    if (x.state === "failing") { parts.push(`${name}: export failing${x.endpoint ? " to " + x.endpoint : ""}${x.error ? " (" + x.error + ")" : ""}`); level = "err"; }
    else if (x.state === "waiting") parts.push(`${name}: no collector configured or reachable yet (spans wait in the transcripts)`);
    else parts.push(`${name}: exporting`);
  }
  parts.push("v" + h.version);
  el.className = level;
  el.dataset.level = level;
  el.textContent = parts.join(" · ");
}

async function refresh() {
  clearTimeout(timer);
  const m = location.hash.match(/^#\/session\/(.+)$/);
  try {
    if (m) { liveStop(); await session(decodeURIComponent(m[1])); }
    else await overview();
    if (document.body.dataset.ready !== "1") document.body.dataset.readyAt = String(performance.now());
    document.body.dataset.ready = "1";
  } catch (e) {
    const el = $("#health");
    el.textContent = String(e.message || e); el.className = "err"; el.dataset.level = "err";
  }
  timer = setTimeout(refresh, REFRESH);
}

window.addEventListener("hashchange", () => { $("#view").innerHTML = '<p class="muted">loading…</p>'; lastSession = ""; document.body.dataset.ready = ""; refresh(); });
refresh();
