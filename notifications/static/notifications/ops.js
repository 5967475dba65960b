/**
 * The /ops page: polls the service's figures every 2 s (ops-data) and draws each one's recent history.
 */

// Each numeric figure keeps its last five minutes (at one poll every 2 s) as a sparkline: enough to
// see a trend while watching. Longer history is Prometheus' job (/metrics, docs/api.md).
const HISTORY_SAMPLES = 150;
const SVG = "http://www.w3.org/2000/svg";

function drawSparkline(dd, values) {
  let svg = dd.parentElement.querySelector("svg.spark");
  if (!svg) {
    svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", `0 0 ${HISTORY_SAMPLES - 1} 20`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    svg.append(document.createElementNS(SVG, "polyline"));
    dd.parentElement.append(svg);
  }
  const top = Math.max(...values, 1);
  const offset = HISTORY_SAMPLES - values.length; // the newest sample is always at the right edge
  const points = values.map((v, i) => `${offset + i},${(20 - (v / top) * 19).toFixed(1)}`).join(" ");
  svg.firstChild.setAttribute("points", points);
  svg.dataset.samples = String(values.length);
}

export function setupOps() {
  const figures = document.getElementById("ops-figures");
  const updated = document.getElementById("ops-updated");
  if (!figures) return;
  const history = new Map(); // figure -> its last HISTORY_SAMPLES numeric values
  const remember = (dd, value) => {
    if (typeof value !== "number") return;
    const values = history.get(dd.dataset.figure) || [];
    values.push(value);
    if (values.length > HISTORY_SAMPLES) values.shift();
    history.set(dd.dataset.figure, values);
    drawSparkline(dd, values);
  };
  const format = (name, value) => {
    if (name === "worker_last_finished_age_s") return value === null ? "never" : `${value} s ago`;
    if (value === null || value === undefined) return "—";
    if (name === "oldest_unacked_age_s") return `${value} s`;
    return String(value);
  };
  const poll = async () => {
    try {
      const response = await fetch(figures.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      const data = await response.json();
      for (const dd of document.querySelectorAll("dl.figures [data-figure]")) {
        dd.textContent = format(dd.dataset.figure, data[dd.dataset.figure]);
        remember(dd, data[dd.dataset.figure]);
      }
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      figures.dataset.polls = String(Number(figures.dataset.polls || 0) + 1);
    } catch {
      updated.textContent = "figures are stale: the last refresh failed";
    }
    setTimeout(poll, 2000);
  };
  poll();
}
