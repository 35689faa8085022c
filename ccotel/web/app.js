// ccotel's page: reads /api/* and renders; refreshes itself every REFRESH ms without reloading.
"use strict";
const REFRESH = 5000;
const COLORS = ["--c0", "--c1", "--c2", "--c3", "--c4", "--c5", "--c6", "--c7"];
const state = { by: "model", sort: "last", desc: true, project: "", day: "", q: "" };
let timer = null;

const $ = (s, el = document) => el.querySelector(s);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const usd = (x) => x == null ? "–" : "$" + (Math.abs(x) >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toFixed(4));
const usdExact = (x) => "$" + (x ?? 0).toFixed(6);
const int = (x) => (x ?? 0).toLocaleString("en-US");
const tok = (x) => x == null ? "" : x >= 1e9 ? (x / 1e9).toFixed(2) + "B" : x >= 1e6 ? (x / 1e6).toFixed(2) + "M" : x >= 1e4 ? (x / 1e3).toFixed(1) + "k" : int(x);
const dur = (s) => s == null ? "–" : s < 1 ? Math.round(s * 1000) + " ms" : s < 60 ? s.toFixed(1) + " s" : s < 3600 ? Math.floor(s / 60) + "m " + Math.round(s % 60) + "s" : Math.floor(s / 3600) + "h " + Math.round((s % 3600) / 60) + "m";
const when = (t) => t == null ? "–" : new Date(t * 1000).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const color = (i) => `var(${COLORS[i % COLORS.length]})`;
const shortModel = (m) => (m || "").replace(/^claude-/, "").replace(/-\d{8}$/, "");

async function api(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function gauge(label, value, budget, id) {
  const pct = budget ? Math.min(100, (value / budget) * 100) : 0;
  const cls = !budget ? "" : pct >= 100 ? "bad" : pct >= 80 ? "warn" : "";
  return `<div class="card" id="${id}"><div class="label">${label}</div><div class="big" data-usd="${value}">${usd(value)}</div>
    ${budget ? `<div class="bar ${cls}"><i style="width:${pct}%"></i></div><div class="muted">${Math.round((value / budget) * 100)}% of ${usd(budget)} budget</div>` : `<div class="muted">no budget set</div>`}</div>`;
}

function stacked(data, w = 720, h = 190) {
  const n = data.buckets.length, pad = { l: 44, r: 6, t: 8, b: 20 };
  const tot = data.buckets.map((_, i) => data.series.reduce((a, s) => a + s.cost_usd[i], 0));
  const max = Math.max(1e-9, ...tot, data.bucket === "hour" ? data.budget_usd || 0 : 0) * 1.08;
  const bw = (w - pad.l - pad.r) / n, y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
  let out = `<svg class="chart" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img">`;
  for (let k = 0; k <= 3; k++) {
    const v = (max / 1.08) * k / 3;
    out += `<line x1="${pad.l}" x2="${w - pad.r}" y1="${y(v)}" y2="${y(v)}" stroke="var(--line)"/><text x="${pad.l - 4}" y="${y(v) + 3}" text-anchor="end">${usd(v)}</text>`;
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
  if (data.budget_usd && data.budget_usd <= max) {
    out += `<line class="budget" x1="${pad.l}" x2="${w - pad.r}" y1="${y(data.budget_usd)}" y2="${y(data.budget_usd)}" stroke="var(--bad)" stroke-dasharray="4 3"/>`;
  }
  return out + "</svg>" + `<div class="legend">${data.series.slice(0, 10).map((s, j) => `<span><i style="background:${color(j)}"></i>${esc(data.by === "model" ? shortModel(s.name) : s.name)} ${usd(s.cost_usd.reduce((a, b) => a + b, 0))}</span>`).join("")}</div>`;
}

function sessionRows(list) {
  return list.map((s) => `<tr data-id="${esc(s.id)}">
    <td><a class="mono" href="#/session/${encodeURIComponent(s.id)}">${esc(s.id.slice(0, 8))}</a></td>
    <td>${esc(s.project)}</td><td>${when(s.start)}</td><td class="num">${dur(s.duration_s)}</td>
    <td>${s.models.map((m) => esc(shortModel(m))).join(", ")}</td>
    <td class="num cost" data-usd="${s.cost_usd}">${usd(s.cost_usd)}</td><td class="num">${tok(s.tokens)}</td>
    <td class="num">${int(s.tool_calls)}</td><td class="num ${s.tool_errors ? "err" : ""}">${int(s.tool_errors)}</td></tr>`).join("");
}

async function overview() {
  const qs = new URLSearchParams({ sort: (state.desc ? "" : "-") + state.sort, limit: "100" });
  if (state.project) qs.set("project", state.project);
  if (state.day) qs.set("day", state.day);
  if (state.q) qs.set("q", state.q);
  const [sum, hourly, daily, sess] = await Promise.all([
    api("/api/summary"), api(`/api/spend?by=${state.by}&bucket=hour`), api(`/api/spend?by=${state.by}&bucket=day`), api("/api/sessions?" + qs),
  ]);
  health(sum.health);
  const view = $("#view");
  if (!$("#overview", view)) {
    view.innerHTML = `<div id="overview"><div class="cards" id="now"></div>
      <div class="charts"><section><h2>Spend per hour, last 48 h <span class="toggle" id="by"><button data-by="model">by model</button><button data-by="project">by project</button></span></h2><div id="hourly"></div></section>
      <section><h2>Spend per day, last 30 days</h2><div id="daily"></div></section></div>
      <section><h2>Sessions <span class="muted" id="count"></span></h2>
      <div class="filters"><input id="q" placeholder="session id…" size="14"><input id="project" placeholder="project" size="12"><input id="day" type="date"></div>
      <div class="tablewrap"><table id="sessions"><thead><tr>
        <th data-sort="last">session</th><th>project</th><th data-sort="start">start</th><th class="num" data-sort="duration">duration</th><th>models</th>
        <th class="num" data-sort="cost">cost</th><th class="num" data-sort="tokens">tokens</th><th class="num">tools</th><th class="num">errors</th></tr></thead><tbody></tbody></table></div></section></div>`;
    $("#by", view).onclick = (e) => { if (e.target.dataset.by) { state.by = e.target.dataset.by; refresh(); } };
    $("#sessions thead", view).onclick = (e) => {
      const k = e.target.dataset.sort; if (!k) return;
      state.desc = state.sort === k ? !state.desc : true; state.sort = k; refresh();
    };
    for (const id of ["q", "project", "day"]) $("#" + id, view).oninput = (e) => { state[id] = e.target.value.trim(); refresh(); };
  }
  $("#now").innerHTML =
    gauge("Today", sum.today.cost_usd, sum.budgets.daily_usd, "today") +
    gauge("This hour (burn rate /h)", sum.this_hour_usd, sum.budgets.hourly_usd, "hour") +
    `<div class="card" id="month"><div class="label">This month</div><div class="big" data-usd="${sum.this_month_usd}">${usd(sum.this_month_usd)}</div><div class="muted">all time ${usd(sum.all_time.cost_usd)} · ${int(sum.all_time.sessions)} sessions</div></div>` +
    `<div class="card" id="active"><div class="label">Active sessions</div><div class="big">${sum.active_sessions}</div><div class="muted">${sum.top_session_today ? `top today: <a class="mono" href="#/session/${encodeURIComponent(sum.top_session_today.id)}">${esc(sum.top_session_today.id.slice(0, 8))}</a> ${usd(sum.top_session_today.cost_usd)}` : "no spend today"}</div></div>` +
    `<div class="card" id="today-models"><div class="label">Today by model</div>${sum.today.by_model.slice(0, 4).map((m) => `<div>${esc(shortModel(m.model))} <span class="num" style="float:right">${usd(m.cost_usd)}</span></div>`).join("") || '<div class="muted">nothing yet</div>'}</div>`;
  for (const b of document.querySelectorAll("#by button")) b.classList.toggle("on", b.dataset.by === state.by);
  $("#hourly").innerHTML = stacked(hourly);
  $("#daily").innerHTML = stacked(daily, 480);
  $("#count").textContent = `${sess.sessions.length} of ${int(sess.total)}`;
  $("#sessions tbody").innerHTML = sessionRows(sess.sessions) || `<tr><td colspan="9" class="muted">no sessions</td></tr>`;
  for (const th of document.querySelectorAll("#sessions th[data-sort]")) th.textContent = th.textContent.replace(/ [▲▼]$/, "") + (th.dataset.sort === state.sort ? (state.desc ? " ▼" : " ▲") : "");
}

async function session(id) {
  const s = await api("/api/sessions/" + encodeURIComponent(id));
  const t0 = s.spans.length ? Math.min(...s.spans.map((x) => x.start)) : s.start;
  const t1 = s.spans.length ? Math.max(...s.spans.map((x) => x.end)) : s.end;
  const span = Math.max(1e-3, t1 - t0);
  const rows = s.spans.map((x) => {
    const failed = !!x.error;
    const label = x.kind === "tool" ? x.tool : x.kind === "model" ? shortModel(x.model) : x.name;
    const toks = (x.input_tokens || 0) + (x.output_tokens || 0) + (x.cache_read_tokens || 0) + (x.cache_write_tokens || 0);
    return `<tr class="${x.kind}${failed ? " failed" : ""}" data-span="${x.id}" data-parent="${x.parent || ""}" data-depth="${x.depth}" title="${esc(x.name)}${failed ? " — " + esc(x.error) : ""}">
      <td class="name" style="padding-left:${0.45 + x.depth * 1.1}rem"><span class="muted">${x.kind}</span> ${esc(label)}${failed ? ' <span class="badge err">failed</span>' : ""}${x.attrs["ccotel.tool.interrupted"] ? ' <span class="badge muted">no result</span>' : ""}</td>
      <td class="track"><span class="seg" style="left:${((x.start - t0) / span) * 100}%;width:${((x.end - x.start) / span) * 100}%"></span></td>
      <td class="num d">${dur(x.duration_s)}</td><td class="num t">${x.input_tokens != null ? tok(toks) : ""}</td><td class="num c">${x.cost_usd != null ? usd(x.cost_usd) : ""}</td></tr>`;
  }).join("");
  $("#view").innerHTML = `<p><a href="#/">← all sessions</a></p>
    <section id="session-head"><h2 class="mono">${esc(s.id)}</h2><div class="kv">
      <span class="muted">project</span><span>${esc(s.project)}${s.branch ? ` <span class="muted">(${esc(s.branch)})</span>` : ""}</span>
      <span class="muted">when</span><span>${when(s.start)} · ${dur(s.duration_s)}</span>
      <span class="muted">models</span><span>${s.models.map((m) => esc(m)).join(", ")}</span>
      <span class="muted">cost</span><span id="session-cost" data-usd="${s.cost_usd}">${usdExact(s.cost_usd)}</span>
      <span class="muted">tokens</span><span>${int(s.input_tokens)} in · ${int(s.output_tokens)} out · ${int(s.cache_read_tokens)} cache read · ${int(s.cache_write_tokens)} cache write (${int(s.requests)} requests)</span>
      <span class="muted">tools</span><span>${int(s.tool_calls)} calls${s.tool_errors ? `, <span class="err">${s.tool_errors} failed</span>` : ""}</span>
      <span class="muted">trace</span><span><a id="trace-link" href="${esc(s.trace_url)}" target="_blank" rel="noopener">${esc(s.trace_id)}</a> <span class="muted">(opens the trace UI)</span></span>
    </div>${s.content_captured ? "" : '<p class="muted">No prompt, command or file content is shown: content capture is off.</p>'}</section>
    <section><h2>Waterfall <span class="muted">${s.spans.length} spans</span></h2><div class="tablewrap"><table class="wf" id="waterfall"><tbody>${rows}</tbody></table></div></section>`;
  api("/api/summary").then((x) => health(x.health)).catch(() => {});
}

function health(h) {
  const el = $("#health");
  const bad = !h.ok || h.parse_errors > 0 || h.traces;
  el.className = bad ? "err" : "muted";
  el.textContent = `${h.ok ? "up" : "catching up"} · ${int(h.files)} files · lag ${dur(h.lag_seconds)} · ${int(h.parse_errors)} parse errors${h.traces ? " · trace export failing" : ""} · v${h.version}`;
}

async function refresh() {
  clearTimeout(timer);
  const m = location.hash.match(/^#\/session\/(.+)$/);
  try {
    if (m) { if (!$("#waterfall") || $("#session-head h2").textContent !== decodeURIComponent(m[1])) await session(decodeURIComponent(m[1])); else await session(decodeURIComponent(m[1])); }
    else await overview();
    if (document.body.dataset.ready !== "1") document.body.dataset.readyAt = String(performance.now());
    document.body.dataset.ready = "1";
  } catch (e) {
    $("#health").textContent = String(e.message || e); $("#health").className = "err";
  }
  timer = setTimeout(refresh, REFRESH);
}

window.addEventListener("hashchange", () => { $("#view").innerHTML = '<p class="muted">loading…</p>'; document.body.dataset.ready = ""; refresh(); });
refresh();
