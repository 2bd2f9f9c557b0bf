// Small SVG charts for the dashboard: stacked bars, horizontal bars, lines and a gauge. Each function
// replaces its container's content. Marks carry data-* attributes naming what they show (the
// screenshot test reads them). Text goes in through textContent, never as markup: log types and
// computer names are the tenant's data. Colours are SVG attributes or CSSOM properties, not style
// attributes, which the page's Content-Security-Policy refuses.

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16"];
const MARGIN = { top: 10, right: 12, bottom: 24, left: 60 };
const TICKS = 4;

export function colour(index) {
  return PALETTE[index % PALETTE.length];
}

function element(parent, name, attributes = {}, text = undefined) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  parent.appendChild(node);
  return node;
}

function canvas(container, className, width, height) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", `chart ${className}`);
  container.replaceChildren(svg);
  return svg;
}

// The axis maximum: 1, 2 or 5 times a power of ten at or above the largest value, so ticks are round.
function roundMaximum(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= value);
}

// Grid lines and labels for values 0..maximum; returns the value → y scale.
function valueAxis(svg, { maximum, width, height, format }) {
  const bottom = height - MARGIN.bottom;
  const y = (value) => bottom - (value / maximum) * (bottom - MARGIN.top);
  for (let tick = 0; tick <= TICKS; tick++) {
    const value = (maximum * tick) / TICKS;
    element(svg, "line", { class: "grid", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(value), y2: y(value) });
    element(svg, "text", { class: "tick", x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end" }, format(value));
  }
  return y;
}

function xLabel(svg, { x, height, text }) {
  element(svg, "text", { class: "tick", x, y: height - 6, "text-anchor": "middle" }, text);
}

function legend(container, names) {
  const list = document.createElement("ul");
  list.className = "legend";
  names.forEach((name, index) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.backgroundColor = colour(index);
    item.append(swatch, name);
    list.append(item);
  });
  container.append(list);
}

// categories: [{key, label}] along x; series: [{name, values}] with one value per category, stacked.
// A category whose total is 0 gets its label but no bar group.
export function stackedBars(container, { categories, series, format, width = 640, height = 220 }) {
  const svg = canvas(container, "stacked-bars", width, height);
  const totals = categories.map((_, i) => series.reduce((sum, s) => sum + s.values[i], 0));
  const y = valueAxis(svg, { maximum: roundMaximum(Math.max(0, ...totals)), width, height, format });
  const slot = (width - MARGIN.left - MARGIN.right) / categories.length;
  categories.forEach((category, i) => {
    const left = MARGIN.left + i * slot;
    xLabel(svg, { x: left + slot / 2, height, text: category.label });
    if (totals[i] === 0) return;
    const group = element(svg, "g", { class: "bar-group", "data-category": category.key, "data-total": totals[i] });
    element(group, "title", {}, `${category.label}: ${format(totals[i])}`);
    let base = 0;
    series.forEach((s, index) => {
      const value = s.values[i];
      if (!value) return;
      const top = y(base + value);
      element(group, "rect", {
        x: left + slot * 0.15,
        y: top,
        width: slot * 0.7,
        height: y(base) - top,
        fill: colour(index),
        "data-series": s.name,
        "data-value": value,
      });
      base += value;
    });
  });
  legend(container, series.map((s) => s.name));
}

// items: [{label, value}], drawn top to bottom as given.
export function horizontalBars(container, { items, format, width = 640 }) {
  const rowHeight = 24;
  const labelWidth = 170;
  const valueWidth = 70;
  const svg = canvas(container, "horizontal-bars", width, items.length * rowHeight + 4);
  const maximum = Math.max(1, ...items.map((item) => item.value));
  items.forEach((item, i) => {
    const top = i * rowHeight + 2;
    const row = element(svg, "g", { class: "bar", "data-label": item.label, "data-value": item.value });
    const label = item.label.length > 24 ? `${item.label.slice(0, 23)}…` : item.label;
    element(row, "text", { class: "label", x: labelWidth - 8, y: top + 16, "text-anchor": "end" }, label);
    const barWidth = ((width - labelWidth - valueWidth) * item.value) / maximum;
    element(row, "rect", { x: labelWidth, y: top + 3, width: barWidth, height: rowHeight - 6, fill: colour(0) });
    element(row, "text", { class: "tick", x: labelWidth + barWidth + 6, y: top + 16 }, format(item.value));
  });
}

// times: the x positions (Dates, evenly spaced); values: one number or null (no data) per time.
export function lineChart(container, { name, times, values, format, width = 320, height = 150 }) {
  const svg = canvas(container, "line-chart", width, height);
  const present = values.filter((value) => value !== null);
  const y = valueAxis(svg, { maximum: roundMaximum(Math.max(0, ...present)), width, height, format });
  const step = (width - MARGIN.left - MARGIN.right) / Math.max(1, times.length - 1);
  const x = (i) => MARGIN.left + i * step;
  times.forEach((time, i) => {
    if (time.getUTCHours() % 6 === 0) xLabel(svg, { x: x(i), height, text: `${String(time.getUTCHours()).padStart(2, "0")}:00` });
  });
  // A gap in the data starts a new segment rather than drawing a line across it.
  let path = "";
  values.forEach((value, i) => {
    if (value === null) return;
    path += `${i > 0 && values[i - 1] !== null ? "L" : "M"}${x(i).toFixed(1)},${y(value).toFixed(1)}`;
  });
  element(svg, "path", { class: "line", d: path, stroke: colour(0), "data-series": name, "data-points": present.length });
  values.forEach((value, i) => {
    if (value !== null) element(svg, "circle", { cx: x(i), cy: y(value), r: 2.5, fill: colour(0) });
  });
}

// value against limit (null: no limit, the bar only shows the value). Wide by default: it spans the page.
export function gauge(container, { value, limit, format, width = 1200, height = 28 }) {
  const svg = canvas(container, "gauge", width, height);
  const group = element(svg, "g", { class: "gauge-bar", "data-value": value, "data-limit": limit ?? "" });
  element(group, "rect", { class: "track", x: 0, y: 0, width, height, rx: 4 });
  const share = limit ? Math.min(1, value / limit) : 0;
  const fill = share >= 0.9 ? colour(3) : colour(2);
  element(group, "rect", { class: "fill", x: 0, y: 0, width: width * share, height, rx: 4, fill });
  const text = limit
    ? `${format(value)} of ${format(limit)} (${(100 * share).toFixed(share < 0.01 ? 2 : 1)} %)`
    : `${format(value)} today, no daily cap`;
  element(group, "text", { class: "gauge-text", x: 10, y: height / 2 + 5 }, text);
}
