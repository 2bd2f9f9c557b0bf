// The dashboard page: signs in with a workspace id and its reader key, reads the query API
// (/api/workspaces/{id}/...) and draws the charts. The key is kept in sessionStorage only (gone when
// the tab closes); a URL fragment `#workspace=...&key=...` signs in too (automation opens the page that
// way; a fragment is never sent to the server) and is removed from the address bar at once.
// When every chart is drawn, body[data-ready] is "true"; after a failure it is "error".

import { gauge, horizontalBars, lineChart, stackedBars } from "./chart.js";

const SESSION_ITEM = "sluice.dashboard.credentials";
const PAGE_LIMIT = 1000; // the API's maximum: fewest round trips
const DAYS = 14;
const HOURS = 24;
const TOP_COMPUTERS = 10;
const TOP_COUNTERS = 4;
const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// name=value pairs, percent-decoded. Not URLSearchParams: it reads "+" as a space, and a base64 key
// pasted into the address bar as it is has "+" in it.
function fragmentParameters() {
  const pairs = location.hash.slice(1).split("&").filter(Boolean);
  return new Map(pairs.map((pair) => pair.split(/=(.*)/s, 2).map((part) => decodeURIComponent(part ?? ""))));
}

function readCredentials() {
  const fragment = fragmentParameters();
  if (fragment.get("workspace") && fragment.get("key")) {
    saveCredentials({ workspace: fragment.get("workspace"), key: fragment.get("key") });
    history.replaceState(null, "", location.pathname + location.search);
  }
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_ITEM));
  } catch {
    return null;
  }
}

function saveCredentials(credentials) {
  sessionStorage.setItem(SESSION_ITEM, JSON.stringify(credentials));
}

// The API wants ISO 8601 UTC; whole seconds keep the URLs readable.
const isoSeconds = (time) => time.toISOString().replace(/\.\d{3}Z$/, "Z");

async function getJson(credentials, resource, params = {}) {
  const url = new URL(`/api/workspaces/${encodeURIComponent(credentials.workspace)}/${resource}`, location.origin);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  let response;
  try {
    response = await fetch(url, { headers: { Authorization: `Key ${credentials.key}` }, cache: "no-store" });
  } catch {
    throw new ApiError(0, "NetworkError", "The service could not be reached.");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body.Error ?? "", body.Message ?? response.statusText);
  }
  return response.json();
}

// Every row of an aggregate over [from, to), following continuation tokens to the last page.
async function allRows(credentials, aggregate, { from, to, granularity }) {
  const rows = [];
  let continuation = null;
  do {
    const params = { from: isoSeconds(from), to: isoSeconds(to), granularity, limit: PAGE_LIMIT };
    if (continuation) params.continuation = continuation;
    const page = await getJson(credentials, aggregate, params);
    rows.push(...page.rows);
    continuation = page.continuation;
  } while (continuation);
  return rows;
}

// Sums `measure` of rows into buckets: Map(key → number).
function sumBy(rows, key, measure) {
  const sums = new Map();
  for (const row of rows) sums.set(key(row), (sums.get(key(row)) ?? 0) + measure(row));
  return sums;
}

const startOfUtcDay = (time) => new Date(Date.UTC(time.getUTCFullYear(), time.getUTCMonth(), time.getUTCDate()));
const startOfUtcHour = (time) => new Date(Math.floor(time.getTime() / HOUR_MS) * HOUR_MS);
const dayKey = (time) => time.toISOString().slice(0, 10);
const hourKey = (time) => startOfUtcHour(time).toISOString();

function formatCount(value) {
  return value >= 10000 ? `${Number((value / 1000).toFixed(1))}k` : String(Number(value.toFixed(2)));
}

function formatBytes(value) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${Number(value.toFixed(1))} ${units[unit]}`;
}

function showEmpty(container, text) {
  const note = document.createElement("p");
  note.className = "empty";
  note.textContent = text;
  container.replaceChildren(note);
}

function drawSummary(summary) {
  $("plan").textContent = summary.plan;
  $("state").textContent = summary.state;
  $("raw-retention").textContent = `${summary.raw_retention_days} days`;
  $("aggregate-retention").textContent = `${summary.aggregate_retention_days} days`;
  $("daily-cap").textContent = summary.daily_cap_bytes === null ? "none" : formatBytes(summary.daily_cap_bytes);
  $("today").textContent = summary.today;
  gauge($("cap-gauge"), { value: summary.today_bytes, limit: summary.daily_cap_bytes, format: formatBytes });
}

// Records and bytes per UTC day, one stacked series per log type, biggest log type first.
function drawDailyUsage(rows, firstDay) {
  const days = Array.from({ length: DAYS }, (_, i) => new Date(firstDay.getTime() + i * DAY_MS));
  const categories = days.map((day) => ({ key: dayKey(day), label: dayKey(day).slice(5) }));
  const logTypes = [...sumBy(rows, (row) => row.log_type, (row) => row.records)]
    .sort((a, b) => b[1] - a[1])
    .map(([logType]) => logType);
  const seriesOf = (measure) =>
    logTypes.map((logType) => {
      const perDay = sumBy(
        rows.filter((row) => row.log_type === logType),
        (row) => dayKey(new Date(row.time)),
        measure,
      );
      return { name: logType, values: categories.map((category) => perDay.get(category.key) ?? 0) };
    });
  stackedBars($("records-per-day"), { categories, series: seriesOf((row) => row.records), format: formatCount });
  stackedBars($("bytes-per-day"), { categories, series: seriesOf((row) => row.bytes), format: formatBytes });
}

function drawTopComputers(rows) {
  const items = [...sumBy(rows, (row) => row.computer, (row) => row.records)]
    .map(([label, value]) => ({ label, value }))
    .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label))
    .slice(0, TOP_COMPUTERS);
  if (items.length === 0) showEmpty($("top-computers"), "No records in the last 24 hours.");
  else horizontalBars($("top-computers"), { items, format: formatCount });
}

// One small chart per counter (object \ counter, over all computers and instances: their units differ,
// so they do not share an axis); the counters with the most samples. The hourly average is
// sum(total) / sum(samples), not an average of averages.
function drawPerfCounters(rows, firstHour) {
  const container = $("perf-counters");
  const counterOf = (row) => `${row.object_name} \\ ${row.counter_name}`;
  const counters = [...sumBy(rows, counterOf, (row) => row.samples)]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, TOP_COUNTERS)
    .map(([counter]) => counter);
  if (counters.length === 0) {
    showEmpty(container, "No performance counters in the last 24 hours.");
    return;
  }
  const times = Array.from({ length: HOURS }, (_, i) => new Date(firstHour.getTime() + i * HOUR_MS));
  container.replaceChildren();
  for (const counter of counters) {
    const ofCounter = rows.filter((row) => counterOf(row) === counter);
    const totals = sumBy(ofCounter, (row) => hourKey(new Date(row.time)), (row) => row.total);
    const samples = sumBy(ofCounter, (row) => hourKey(new Date(row.time)), (row) => row.samples);
    const values = times.map((time) => {
      const key = time.toISOString();
      return samples.get(key) ? totals.get(key) / samples.get(key) : null;
    });
    const figure = document.createElement("figure");
    const title = document.createElement("h3");
    title.textContent = counter;
    const chart = document.createElement("div");
    figure.append(title, chart);
    container.append(figure);
    lineChart(chart, { name: counter, times, values, format: formatCount });
  }
}

async function showDashboard(credentials) {
  const now = new Date();
  const firstDay = new Date(startOfUtcDay(now).getTime() - (DAYS - 1) * DAY_MS);
  const firstHour = new Date(startOfUtcHour(now).getTime() - (HOURS - 1) * HOUR_MS);
  const [summary, dailyUsage, hourlyUsage, hourlyPerf] = await Promise.all([
    getJson(credentials, "summary"),
    allRows(credentials, "usage", { from: firstDay, to: now, granularity: "day" }),
    allRows(credentials, "usage", { from: firstHour, to: now, granularity: "hour" }),
    allRows(credentials, "perf", { from: firstHour, to: now, granularity: "hour" }),
  ]);
  $("workspace-label").textContent = summary.workspace_id;
  $("dashboard").hidden = false;
  drawSummary(summary);
  drawDailyUsage(dailyUsage, firstDay);
  drawTopComputers(hourlyUsage);
  drawPerfCounters(hourlyPerf, firstHour);
}

function describe(error) {
  if (!(error instanceof ApiError)) return `The dashboard failed: ${error.message}`;
  if (error.status === 401 || error.status === 403) return "Sign-in failed: wrong workspace or key.";
  if (error.status === 0) return error.message;
  return `The query API answered ${error.status} ${error.code}: ${error.message}`;
}

function showSignIn(workspace = "") {
  $("dashboard").hidden = true;
  $("sign-out").hidden = true;
  $("workspace-label").textContent = "";
  $("sign-in").hidden = false;
  $("sign-in").elements.workspace.value = workspace;
}

async function start() {
  const credentials = readCredentials();
  if (!credentials) {
    showSignIn();
    return;
  }
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  try {
    await showDashboard(credentials);
    document.body.dataset.ready = "true";
  } catch (error) {
    // A refused key is not kept: the next visit asks again.
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) sessionStorage.removeItem(SESSION_ITEM);
    showSignIn(credentials.workspace);
    $("error").textContent = describe(error);
    $("error").hidden = false;
    document.body.dataset.ready = "error";
  }
}

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target.elements;
  saveCredentials({ workspace: form.workspace.value.trim(), key: form.key.value.trim() });
  location.reload();
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(SESSION_ITEM);
  location.reload();
});

start();
