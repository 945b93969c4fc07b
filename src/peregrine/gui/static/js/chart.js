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
