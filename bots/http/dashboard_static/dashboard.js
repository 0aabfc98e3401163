// chatbridge dashboard: polls GET /api/dashboard and draws its figures as text and inline SVG.
// No library and no outside request: everything comes from this service.
"use strict";

(() => {
  const TOKEN_KEY = "chatbridge.dashboard.token";
  const REFRESH_MS = 10000;
  const SVG = "http://www.w3.org/2000/svg";
  const FRONT_COLORS = {
    http: "#2563eb", telegram: "#0ea5e9", discord: "#7c3aed", cli: "#16a34a", unknown: "#6b7280",
  };
  const WIDTH = 480;
  const HEIGHT = 160;
  const PAD = { left: 44, right: 20, top: 10, bottom: 24 };

  let selected = "hour";
  let latest = null;
  let timer = null;

  const $ = (id) => document.getElementById(id);

  // --- loading and signing in ----------------------------------------------------------------

  async function load() {
    clearTimeout(timer);
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    let response;
    try {
      response = await fetch("/api/dashboard", { headers, cache: "no-store" });
    } catch (error) {
      setStatus("offline", "The service does not answer; retrying");
      schedule();
      return;
    }
    if (response.status === 401 || response.status === 403) {
      showLogin(token ? refusalText(response.status) : "");
      return;
    }
    if (!response.ok) {
      setStatus("error", `The service answered ${response.status}; retrying`);
      schedule();
      return;
    }
    latest = await response.json();
    showDashboard();
    render();
    setStatus("ok", `Updated ${new Date().toLocaleTimeString()}`);
    schedule();
  }

  function refusalText(status) {
    return status === 403
      ? "That token cannot read the dashboard: use the service token (API_TOKEN)."
      : "That token was not accepted.";
  }

  function schedule() {
    timer = setTimeout(load, REFRESH_MS);
  }

  function showLogin(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("dashboard").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message;
    setStatus("signed-out", "Sign in to see the figures");
    $("token").focus();
  }

  function showDashboard() {
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("sign-out").hidden = sessionStorage.getItem(TOKEN_KEY) === null;
  }

  function setStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  // --- rendering ------------------------------------------------------------------------------

  function render() {
    if (latest === null) return;
    const win = latest[selected];
    const perPoint = selected === "hour" ? "minute" : "hour";
    $("dashboard").dataset.window = selected;
    $("dashboard").dataset.generatedAt = latest.generatedAt;
    setNumber("active-sessions", latest.sessions.active);
    $("sessions-window").textContent = `active within ${duration(latest.sessions.windowSeconds)}`;
    setNumber("active-users", win.activeUsers);
    setNumber("turns", win.turns);
    $("turns-rate").textContent = `${(win.turns / win.points.length).toFixed(1)} per ${perPoint}`;
    setNumber("errors", win.errors);
    setNumber("refusals", win.refusals);
    setNumber("tokens", sumModels(win, "promptTokens") + sumModels(win, "completionTokens"));
    const cost = sumModels(win, "costUsd");
    $("cost").textContent = `$${cost.toFixed(4)} spent`;
    $("cost").dataset.value = String(cost);
    renderMemory(latest.redisMemory);
    renderCharts(win);
    renderModels(win.models);
    renderCounts("turns-by-front", "front", win.turnsByFront);
    renderCounts("turns-by-outcome", "outcome", win.turnsByOutcome);
    renderCounts("errors-by-kind", "kind", win.errorsByKind);
    renderCounts("refusals-by-source", "source", win.refusalsBySource);
  }

  function renderMemory(memory) {
    const used = memory.usedBytes;
    const max = memory.maxBytes;
    setNumber("redis-memory", used, bytes(used));
    $("redis-memory").dataset.maxBytes = String(max);
    const share = max > 0 ? Math.min(1, used / max) : 0;
    const bar = $("redis-memory-bar");
    bar.style.width = `${(share * 100).toFixed(1)}%`;
    bar.dataset.level = share > 0.9 ? "high" : share > 0.7 ? "warn" : "ok";
    const nodes = memory.nodes > 1 ? ` over ${memory.nodes} primaries` : "";
    $("redis-memory-limit").textContent = max > 0
      ? `${(share * 100).toFixed(1)}% of maxmemory ${bytes(max)}${nodes}`
      : `no maxmemory set${nodes}`;
  }

  function renderCharts(win) {
    const points = win.points;
    const fronts = Object.keys(win.turnsByFront);
    barChart($("chart-turns"), points, fronts.map((front) => ({
      name: front, color: FRONT_COLORS[front] || FRONT_COLORS.unknown,
      value: (p) => p.turnsByFront[front] || 0,
    })));
    lineChart($("chart-latency"), points, [
      { name: "p50", color: "#2563eb", value: (p) => p.latencyP50 },
      { name: "p95", color: "#f97316", value: (p) => p.latencyP95 },
    ]);
    lineChart($("chart-ttft"), points, [
      { name: "p50", color: "#2563eb", value: (p) => p.ttftP50 },
      { name: "p95", color: "#f97316", value: (p) => p.ttftP95 },
    ]);
    lineChart($("chart-users"), points, [
      { name: "users", color: "#16a34a", value: (p) => p.activeUsers },
    ]);
    barChart($("chart-errors"), points, [
      { name: "errors", color: "#dc2626", value: (p) => p.errors },
      { name: "refusals", color: "#f59e0b", value: (p) => p.refusals },
    ]);
    barChart($("chart-tokens"), points, [
      { name: "tokens", color: "#0891b2", value: (p) => p.tokens },
    ]);
  }

  function renderModels(models) {
    const body = $("models").tBodies[0];
    body.replaceChildren();
    if (models.length === 0) {
      body.append(emptyRow(9, "No model calls in this window"));
      return;
    }
    for (const model of models) {
      const row = document.createElement("tr");
      row.dataset.model = model.model;
      row.append(cell(model.model, null, "model"));
      row.append(cell(formatInt(model.calls), model.calls, "calls"));
      for (const name of ["latencyP50", "latencyP95", "ttftP50", "ttftP95"]) {
        row.append(cell(seconds(model[name]), model[name], name));
      }
      row.append(cell(formatInt(model.promptTokens), model.promptTokens, "promptTokens"));
      row.append(cell(formatInt(model.completionTokens), model.completionTokens, "completionTokens"));
      row.append(cell(model.costUsd.toFixed(6), model.costUsd, "costUsd"));
      body.append(row);
    }
  }

  function renderCounts(tableId, attribute, counts) {
    const body = $(tableId).tBodies[0];
    body.replaceChildren();
    const names = Object.keys(counts);
    if (names.length === 0) {
      body.append(emptyRow(2, "None"));
      return;
    }
    for (const name of names) {
      const row = document.createElement("tr");
      row.dataset[attribute] = name;
      row.append(cell(name, null, "name"));
      row.append(cell(formatInt(counts[name]), counts[name], "count"));
      body.append(row);
    }
  }

  function cell(text, value, field) {
    const td = document.createElement("td");
    td.textContent = text;
    td.dataset.field = field;
    if (value !== null && value !== undefined) td.dataset.value = String(value);
    return td;
  }

  function emptyRow(columns, text) {
    const row = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = columns;
    td.className = "empty";
    td.textContent = text;
    row.append(td);
    return row;
  }

  function setNumber(id, value, text) {
    const element = $(id);
    element.dataset.value = String(value);
    element.textContent = text === undefined ? formatInt(value) : text;
  }

  function sumModels(win, field) {
    return win.models.reduce((total, model) => total + model[field], 0);
  }

  // --- charts (inline SVG) ----------------------------------------------------------------------

  function svgElement(name, attributes) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    return element;
  }

  function frame(container, points, maximum, legend) {
    const svg = svgElement("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "chart-svg",
    });
    const plotHeight = HEIGHT - PAD.top - PAD.bottom;
    const top = niceCeiling(maximum);
    for (const fraction of [0, 0.5, 1]) {
      const y = PAD.top + plotHeight * (1 - fraction);
      svg.append(svgElement("line", {
        x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid",
      }));
      const label = svgElement("text", { x: PAD.left - 6, y: y + 4, class: "axis", "text-anchor": "end" });
      label.textContent = shortNumber(top * fraction);
      svg.append(label);
    }
    const step = points.length > 30 ? 15 : 6;
    points.forEach((point, index) => {
      if ((points.length - 1 - index) % step !== 0) return;
      const label = svgElement("text", {
        x: xOf(index, points.length), y: HEIGHT - 6, class: "axis", "text-anchor": "middle",
      });
      label.textContent = clock(point.start);
      svg.append(label);
    });
    container.replaceChildren(svg, legendOf(legend));
    return { svg, yOf: (value) => PAD.top + plotHeight * (1 - value / top) };
  }

  function barChart(container, points, series) {
    const totals = points.map((p) => series.reduce((sum, s) => sum + s.value(p), 0));
    const { svg, yOf } = frame(container, points, Math.max(0, ...totals), series);
    const slot = (WIDTH - PAD.left - PAD.right) / points.length;
    const width = Math.max(1, slot * 0.7);
    points.forEach((point, index) => {
      let base = 0;
      for (const s of series) {
        const value = s.value(point);
        if (value <= 0) continue;
        svg.append(svgElement("rect", {
          x: xOf(index, points.length) - width / 2, width, y: yOf(base + value),
          height: yOf(base) - yOf(base + value), fill: s.color,
        }));
        base += value;
      }
    });
  }

  function lineChart(container, points, series) {
    const values = points.flatMap((p) => series.map((s) => s.value(p))).filter((v) => v !== null);
    const { svg, yOf } = frame(container, points, Math.max(0, ...values), series);
    for (const s of series) {
      let path = "";
      let drawing = false;
      points.forEach((point, index) => {
        const value = s.value(point);
        if (value === null) {
          drawing = false;
          return;
        }
        const x = xOf(index, points.length).toFixed(1);
        const y = yOf(value).toFixed(1);
        path += `${drawing ? "L" : "M"}${x},${y} `;
        drawing = true;
        svg.append(svgElement("circle", { cx: x, cy: y, r: 2.5, fill: s.color }));
      });
      if (path) {
        svg.append(svgElement("path", { d: path.trim(), fill: "none", stroke: s.color, "stroke-width": 2 }));
      }
    }
  }

  function legendOf(series) {
    const legend = document.createElement("div");
    legend.className = "legend";
    for (const s of series) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      item.append(swatch, s.name);
      legend.append(item);
    }
    return legend;
  }

  function xOf(index, count) {
    const slot = (WIDTH - PAD.left - PAD.right) / count;
    return PAD.left + slot * (index + 0.5);
  }

  function niceCeiling(value) {
    if (value <= 0) return 1;
    const magnitude = 10 ** Math.floor(Math.log10(value));
    const fraction = value / magnitude;
    const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
    return nice * magnitude;
  }

  // --- formatting -------------------------------------------------------------------------------

  function formatInt(value) {
    return Number(value).toLocaleString("en-US");
  }

  function shortNumber(value) {
    if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
    if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(3)));
  }

  function seconds(value) {
    return value === null ? "–" : `${value.toFixed(3)} s`;
  }

  function bytes(value) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let size = value;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
      size /= 1024;
      unit += 1;
    }
    return `${size.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
  }

  function duration(totalSeconds) {
    if (totalSeconds % 3600 === 0) return `${totalSeconds / 3600} h`;
    if (totalSeconds % 60 === 0) return `${totalSeconds / 60} min`;
    return `${totalSeconds} s`;
  }

  function clock(iso) {
    const moment = new Date(iso);
    return moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  }

  // --- wiring -----------------------------------------------------------------------------------

  function selectWindow(name) {
    selected = name;
    for (const tab of document.querySelectorAll(".tab")) {
      tab.setAttribute("aria-pressed", String(tab.dataset.window === name));
    }
    render();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      setStatus("loading", "Signing in…");
      load();
    });
    $("sign-out").addEventListener("click", () => {
      clearTimeout(timer);
      latest = null;
      showLogin("");
    });
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => selectWindow(tab.dataset.window));
    }
    load();
  });
})();
