// A cell's bar chart as inline SVG, drawn from its stored rows. Labels go in as text nodes and
// sizes as attributes (no style attribute: the page's CSP allows only its own style sheet).

const SVG = "http://www.w3.org/2000/svg";
const BAR = 22;
const GAP = 6;
const LABEL = 180;
const WIDTH = 640;

function svg(tag, attributes, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Horizontal bars: one per row, `x` the label column and `y` the (numeric) length. */
export function barChart(rows, x, y, { most = 50 } = {}) {
  const shown = rows.slice(0, most).map((r) => [String(r[x] ?? "null"), Number(r[y]) || 0]);
  const top = Math.max(1, ...shown.map(([, v]) => Math.abs(v)));
  const room = WIDTH - LABEL - 80;
  const height = shown.length * (BAR + GAP) + GAP;
  const chart = svg("svg", { class: "chart", role: "img", width: WIDTH, height,
    viewBox: `0 0 ${WIDTH} ${height}`, "aria-label": `Bar chart of ${y} by ${x}` });
  shown.forEach(([label, value], i) => {
    const top_ = GAP + i * (BAR + GAP);
    const length = Math.max(1, Math.round((Math.abs(value) / top) * room));
    const bar = svg("g", { class: "bar" });
    bar.append(
      svg("text", { x: LABEL - 8, y: top_ + BAR * 0.7, "text-anchor": "end" },
        label.length > 24 ? `${label.slice(0, 23)}…` : label),
      svg("rect", { x: LABEL, y: top_, width: length, height: BAR, rx: 2 }),
      svg("text", { x: LABEL + length + 6, y: top_ + BAR * 0.7, class: "value" },
        value.toLocaleString("en-US")),
      svg("title", {}, `${label}: ${value}`));
    chart.append(bar);
  });
  return chart;
}

const LINE_HEIGHT = 220;
const MARGIN = 40;

/** Seconds since 1970 from a number (seconds) or a date text; null when it is neither. */
function moment(value) {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  const parsed = Date.parse(String(value));
  return Number.isNaN(parsed) ? null : parsed / 1000;
}

/** `y` over time (`x`: seconds or dates) as one line; null when under two points can be drawn. */
export function lineChart(rows, x, y) {
  const points = rows.map((r) => [moment(r[x]), Number(r[y])])
    .filter(([t, v]) => t !== null && Number.isFinite(v)).sort((a, b) => a[0] - b[0]);
  if (points.length < 2) return null;
  const [t0, t1] = [points[0][0], points[points.length - 1][0]];
  const values = points.map(([, v]) => v);
  const [low, high] = [Math.min(...values), Math.max(...values)];
  const [spanT, spanV] = [(t1 - t0) || 1, (high - low) || 1];
  const [innerW, innerH] = [WIDTH - 2 * MARGIN, LINE_HEIGHT - 2 * MARGIN];
  const coords = points.map(([t, v]) => `${(MARGIN + innerW * (t - t0) / spanT).toFixed(1)},` +
    `${(MARGIN + innerH - innerH * (v - low) / spanV).toFixed(1)}`).join(" ");
  const iso = (t) => new Date(t * 1000).toISOString().replace(".000Z", "Z");
  const chart = svg("svg", { class: "chart", role: "img", width: WIDTH, height: LINE_HEIGHT,
    viewBox: `0 0 ${WIDTH} ${LINE_HEIGHT}`, "aria-label": `Line chart of ${y} over ${x}` });
  chart.append(
    svg("polyline", { class: "line", fill: "none", "stroke-width": 2, points: coords }),
    svg("text", { x: MARGIN, y: LINE_HEIGHT - 8 }, iso(t0)),
    svg("text", { x: WIDTH - MARGIN, y: LINE_HEIGHT - 8, "text-anchor": "end" }, iso(t1)),
    svg("text", { x: 4, y: MARGIN - 6 }, high.toLocaleString("en-US")),
    svg("text", { x: 4, y: MARGIN + innerH }, low.toLocaleString("en-US")));
  return chart;
}
