// The autoresearch dashboard. Every string from the session (descriptions, notes, logs, diffs) goes
// into the page through textContent, never as HTML; the server's CSP forbids inline scripts besides.
"use strict";

const $ = (sel) => document.querySelector(sel);
const view = { state: null, rows: [], receivedAt: 0, logs: {}, sort: { key: "row", dir: 1 }, open: new Set(), diffs: new Map(), chartVersion: -1 };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function num(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString();
}

function renderHeader(s) {
  const sum = s.summary;
  $("#tag").textContent = s.tag ? "· " + s.tag + (s.archived ? " (archived: " + s.archived + ")" : "") : "";
  const parts = [sum.experiments + " experiments", sum.keep + " kept", sum.discard + " discarded", sum.crash + " crashed",
    "best " + s.metric + " " + num(sum.best, 6), "baseline " + num(sum.baseline, 6)];
  if (sum.sigma !== null) parts.push("σ " + num(sum.sigma, 6));
  if (sum.improvement) parts.push("improved " + num(sum.improvement.percent, 2) + "%");
  $("#headline").textContent = parts.join(" · ");
  const banner = $("#banner");
  const notes = [];
  if (sum.waiting) notes.push("waiting for " + sum.waiting.what + ": " + sum.waiting.reason);
  if (sum.stopped) notes.push("stopped: " + sum.stopped);
  if (sum.failed_proposals_in_a_row) notes.push(sum.failed_proposals_in_a_row + " failed proposals in a row: " + (sum.last_proposal_error || ""));
  banner.hidden = notes.length === 0;
  banner.textContent = notes.join(" — ");
  $("#metric-head").textContent = s.metric + (s.direction === "min" ? " ↓" : " ↑");
}

function renderChart(version) {
  if (version === view.chartVersion || version === "0") return;  // 0: not drawn yet
  view.chartVersion = version;
  $("#chart").src = "/chart.svg?v=" + encodeURIComponent(version);
}

function renderLanes() {
  const s = view.state;
  const box = $("#lanes");
  box.replaceChildren();
  for (const lane of s.lanes) {
    const card = el("div", null, "lane");
    card.dataset.lane = lane.lane;
    card.append(el("strong", "lane " + lane.lane + (lane.where ? " · " + lane.where : "")));
    if (lane.n === null) {
      card.append(el("p", "idle", "muted"));
    } else {
      card.dataset.n = lane.n;
      card.append(el("p", "#" + lane.n + " " + lane.phase + ": " + lane.description));
      const elapsed = lane.elapsed_s === null ? null : lane.elapsed_s + (Date.now() - view.receivedAt) / 1000;
      const running = lane.phase === "running";
      const line = el("p", (running ? "training " : "in phase ") + duration(elapsed) + (running ? " of " + duration(lane.budget_s) : ""), "muted elapsed");
      card.append(line);
      if (running && lane.budget_s) {
        const bar = el("div", null, "bar" + (elapsed > lane.budget_s ? " over" : ""));
        const fill = el("div");
        fill.style.width = Math.min(100, (100 * elapsed) / lane.budget_s) + "%";
        bar.append(fill);
        card.append(bar);
      }
      const log = view.logs[String(lane.lane)];
      if (log && log.n === lane.n) card.append(el("pre", log.tail.split("\n").slice(-25).join("\n"), "log"));
    }
    box.append(card);
  }
}

function matches(row, text, status) {
  if (status && row.status !== status) return false;
  if (!text) return true;
  const hay = (row.description + " " + row.commit + " " + row.cause + " #" + row.n).toLowerCase();
  return hay.includes(text.toLowerCase());
}

function sortValue(row, key) {
  return key === "confidence" ? row.verdict.confidence : row[key];
}

function renderRows() {
  const s = view.state;
  const text = $("#filter").value.trim();
  const status = $("#status-filter").value;
  const { key, dir } = view.sort;
  const rows = view.rows.filter((r) => matches(r, text, status));
  rows.sort((a, b) => {
    const x = sortValue(a, key), y = sortValue(b, key);
    if (x === y) return a.row - b.row;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
  const body = $("#rows tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = el("tr", null, "row " + row.status);
    tr.dataset.n = row.n;
    tr.append(el("td", row.row, "num"), el("td", row.commit, "num"), el("td", num(row.metric, 6), "num"),
      el("td", num(row.memory_gb, 1), "num wide"), el("td", row.status, "status"),
      el("td", num(row.verdict.confidence, 2), "num wide"), el("td", row.description, "description"));
    tr.addEventListener("click", () => toggle(row.n));
    body.append(tr);
    if (view.open.has(row.n)) body.append(detail(row));
  }
  const all = view.rows.length;
  $("#row-count").textContent = rows.length === all ? "(" + all + ")" : "(" + rows.length + " of " + all + ")";
  for (const th of document.querySelectorAll("#rows th")) {
    th.classList.toggle("asc", th.dataset.key === key && dir === 1);
    th.classList.toggle("desc", th.dataset.key === key && dir === -1);
  }
}

function toggle(n) {
  if (view.open.has(n)) view.open.delete(n); else view.open.add(n);
  renderRows();
}

function facts(pairs) {
  const dl = el("dl");
  for (const [k, v] of pairs) if (v !== null && v !== undefined && v !== "") dl.append(el("dt", k), el("dd", v));
  return dl;
}

function detail(row) {
  const tr = el("tr", null, "detail");
  tr.dataset.n = row.n;
  const td = el("td");
  td.colSpan = 7;
  const v = row.verdict;
  td.append(el("h3", "#" + row.n + " " + row.status + (v.decision ? " — judge: " + v.decision + (v.reason ? " (" + v.reason + ")" : "") : "")));
  td.append(facts([["confidence (gain ÷ σ)", num(v.confidence, 2)], ["gain", num(v.gain, 6)], ["threshold", num(v.threshold, 6)],
    ["σ", num(v.sigma, 6)], ["mean", num(v.mean, 6)], ["lineage", v.lineage], ["cause", row.cause],
    ["wall time", duration(row.wall_s)], ["lane", row.lane], ["agent", row.agent],
    ["cost", row.cost_usd === null ? null : "$" + num(row.cost_usd, 4)], ["claim flag", v.claim_flag ? "the run's own metric was far from the evaluated one" : null]]));
  td.append(el("h3", "Measurements of " + row.commit));
  const table = el("table", null, "measurements");
  const head = el("tr");
  for (const h of ["#", "metric", "status", "cause", "wall time", "description"]) head.append(el("th", h));
  table.append(head);
  for (const m of row.measurements) {
    const r = el("tr");
    r.append(el("td", m.n, "num"), el("td", num(m.metric, 6), "num"), el("td", m.status), el("td", m.cause),
      el("td", duration(m.wall_s), "num"), el("td", m.description));
    table.append(r);
  }
  td.append(table);
  td.append(el("h3", "Diff against its parent"));
  const diff = el("pre", "loading…", "diff");
  td.append(diff);
  // A commit's diff never changes: fetched once per row, kept across live updates.
  if (!view.diffs.has(row.n)) view.diffs.set(row.n, fetchText("/api/diff/" + row.n));
  view.diffs.get(row.n).then((text) => showDiff(diff, text));
  const logButton = el("button", "show the run log");
  const log = el("pre", null, "log");
  log.hidden = true;
  logButton.addEventListener("click", (event) => {
    event.stopPropagation();
    log.hidden = false;
    fetchText("/api/log/" + row.n).then((text) => { log.textContent = text || "(empty)"; });
  });
  td.append(logButton, log);
  tr.append(td);
  return tr;
}

function showDiff(pre, text) {
  pre.replaceChildren();
  for (const line of text.split("\n")) {
    const cls = line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : null;
    pre.append(el("span", line + "\n", cls));
  }
}

async function fetchText(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  return response.ok ? response.text() : "(" + response.status + ") " + (await response.text());
}

function renderAgent(s) {
  const t = s.summary.tokens;
  $("#agent-facts").replaceChildren(...facts([["agent", s.agent], ["cost", "$" + num(s.summary.cost_usd, 4)],
    ["tokens in / out", t.input_tokens + " / " + t.output_tokens], ["cache read / write", t.cache_read_tokens + " / " + t.cache_write_tokens],
    ["GPU-hours", num(s.summary.gpu_hours, 3)], ["failed proposals", s.summary.skipped_proposals]]).childNodes);
  $("#notes").textContent = s.notes || "(none)";
}

function renderLimits(s) {
  const body = $("#limits tbody");
  body.replaceChildren();
  if (!s.limits.length) {
    const tr = el("tr");
    tr.append(el("td", "none in autoresearch.toml or AUTORESEARCH_* (a flag given to `run` is not seen here)"));
    body.append(tr);
  }
  for (const lim of s.limits) {
    const tr = el("tr", null, lim.reached ? "crash" : "");
    tr.append(el("td", lim.name), el("td", lim.used === null ? "–" : +Number(lim.used).toFixed(3)),
      el("td", lim.limit === null ? "–" : lim.limit), el("td", lim.reached ? "reached" : lim.eta ? when(lim.eta) : "–"));
    body.append(tr);
  }
}

function render() {
  const s = view.state;
  renderHeader(s);
  renderLanes();
  renderRows();
  renderAgent(s);
  renderLimits(s);
}

function applyState(state) {
  if (state.rows) view.rows = state.rows;  // the first fetch; the stream sends rows as "rows" events
  view.state = state;
  view.receivedAt = Date.now();
  render();
}

async function start() {
  // The first state over a gzipped fetch; the stream then sends only what changes after it.
  let since = "";
  try {
    const response = await fetch("/api/state", { credentials: "same-origin" });
    if (response.ok) {
      const state = await response.json();
      applyState(state);
      since = state.id;
    }
  } catch (error) {
    $("#connection").textContent = "reconnecting…";
  }
  connect(since);
}

function connect(since) {
  const source = new EventSource("/events" + (since ? "?since=" + encodeURIComponent(since) : ""));
  source.addEventListener("open", () => { $("#connection").textContent = "live"; });
  source.addEventListener("error", () => { $("#connection").textContent = "reconnecting…"; });
  source.addEventListener("rows", (event) => {
    const delta = JSON.parse(event.data);
    view.rows.length = delta.from;
    view.rows.push(...delta.rows);
  });
  source.addEventListener("state", (event) => applyState(JSON.parse(event.data)));
  source.addEventListener("chart", (event) => renderChart(event.data));
  source.addEventListener("logs", (event) => {
    view.logs = JSON.parse(event.data);
    if (view.state) renderLanes();
  });
  source.addEventListener("problem", (event) => {
    const banner = $("#banner");
    if (event.data) { banner.hidden = false; banner.textContent = "cannot read the journal: " + event.data; }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const th of document.querySelectorAll("#rows th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      view.sort = { key, dir: view.sort.key === key ? -view.sort.dir : 1 };
      renderRows();
    });
  }
  $("#filter").addEventListener("input", () => view.state && renderRows());
  $("#status-filter").addEventListener("change", () => view.state && renderRows());
  setInterval(() => { if (view.state) renderLanes(); }, 1000);
  start();
});
