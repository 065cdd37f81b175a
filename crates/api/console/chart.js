// Hand-written SVG bar charts of input and output tokens per group (day or model), built with
// DOM calls only (no innerHTML, no style attributes). chartLayout computes the geometry and
// is pure; barChart turns it into an accessible <svg role="img">.

import { formatCompact, formatCount, plural } from './format.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 640;
const HEIGHT = 260;
const PAD = { left: 52, right: 8, top: 12, bottom: 72 };
const MAX_LABELS = 12;
const MAX_BAR_WIDTH = 40;
const LABEL_CHARS = 16;
const KINDS = ['input', 'output'];

/** The smallest "nice" step (1, 2 or 5 × 10^k, at least 1) that covers `max` in `ticks` steps. */
function niceStep(max, ticks = 4) {
  const raw = Math.max(max, 1) / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  const factor = normalized <= 1 ? 1 : normalized <= 2 ? 2 : normalized <= 5 ? 5 : 10;
  return Math.max(1, factor * magnitude);
}

/**
 * The geometry of a grouped bar chart of `series` ([{label, input, output}]) in a
 * WIDTH × HEIGHT box: the ticks, the baseline, and per group its centre and two bars.
 */
function chartLayout(series) {
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const baseline = PAD.top + plotHeight;
  const max = Math.max(0, ...series.flatMap((group) => [group.input, group.output]));
  const step = niceStep(max);
  const top = step * Math.max(1, Math.ceil(max / step));
  const slot = plotWidth / Math.max(series.length, 1);
  const barWidth = Math.min(Math.max(slot * 0.38, 0.5), MAX_BAR_WIDTH);
  const ticks = [];
  for (let value = 0; value <= top; value += step) {
    ticks.push({ value, y: baseline - (value / top) * plotHeight });
  }
  const groups = series.map((group, index) => {
    const x = PAD.left + slot * (index + 0.5);
    const bars = KINDS.map((kind, k) => {
      const height = (group[kind] / top) * plotHeight;
      return { kind, value: group[kind], x: x - barWidth + k * barWidth, y: baseline - height, width: barWidth, height };
    });
    return { label: group.label, x, bars };
  });
  return { ticks, groups, baseline, labelEvery: Math.ceil(series.length / MAX_LABELS) };
}

/** A one-sentence summary of `series` (whose groups are called `noun`, e.g. "day") for screen readers. */
function chartSummary(title, series, noun) {
  if (series.length === 0) {
    return `${title}: no usage in this range.`;
  }
  const sum = (kind) => series.reduce((total, group) => total + group[kind], 0);
  const busiest = series.reduce((best, group) =>
    group.input + group.output > best.input + best.output ? group : best);
  return `${title}: ${formatCount(sum('input'))} input and ${formatCount(sum('output'))} output `
    + `tokens over ${plural(series.length, noun)}; the most in ${busiest.label} `
    + `(${formatCount(busiest.input + busiest.output)} tokens).`;
}

/**
 * An accessible SVG bar chart of input and output tokens per group; `noun` names a group in
 * the summary ("day", "model"), and `emptyText` is shown when `series` is empty.
 */
export function barChart(series, { title, noun, emptyText }) {
  const layout = chartLayout(series);
  const svg = svgElement('svg', {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: 'img',
    'aria-label': series.length === 0 ? `${title}: ${emptyText}` : chartSummary(title, series, noun),
    class: 'chart-svg',
  });
  svg.append(...layout.ticks.map((tick) => tickLine(tick)));
  if (series.length === 0) {
    svg.append(svgElement('text', { x: WIDTH / 2, y: HEIGHT / 2, 'text-anchor': 'middle', class: 'chart-empty' }, emptyText));
    return svg;
  }
  layout.groups.forEach((group, index) => {
    svg.append(...group.bars.map((bar) => barRect(bar, group.label)));
    if (index % layout.labelEvery === 0) {
      svg.append(groupLabel(group, layout.baseline));
    }
  });
  return svg;
}

function tickLine(tick) {
  const g = svgElement('g', { class: 'chart-tick' });
  g.append(
    svgElement('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: tick.y, y2: tick.y }),
    svgElement('text', { x: PAD.left - 6, y: tick.y + 4, 'text-anchor': 'end' }, formatCompact(tick.value)),
  );
  return g;
}

function barRect(bar, label) {
  const rect = svgElement('rect', {
    x: bar.x, y: bar.y, width: bar.width, height: bar.height, class: `bar-${bar.kind}`,
  });
  rect.append(svgElement('title', {}, `${label}: ${formatCount(bar.value)} ${bar.kind} tokens`));
  return rect;
}

function groupLabel(group, baseline) {
  const y = baseline + 14;
  const text = group.label.length > LABEL_CHARS ? `${group.label.slice(0, LABEL_CHARS - 1)}…` : group.label;
  return svgElement('text', {
    x: group.x, y, 'text-anchor': 'end', transform: `rotate(-40 ${group.x} ${y})`,
  }, text);
}

function svgElement(tag, attributes, text) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    element.textContent = text;
  }
  return element;
}
