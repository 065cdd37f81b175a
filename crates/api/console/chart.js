// Hand-written SVG bar charts of one or more measures per group (tokens or cost per day or
// model), built with DOM calls only (no innerHTML, no style attributes). chartLayout computes
// the geometry and is pure; barChart turns it into an accessible <svg role="img">.

import { formatAmount, formatCompact, formatCount, plural } from './format.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 640;
const HEIGHT = 260;
const PAD = { left: 52, right: 8, top: 12, bottom: 72 };
const MAX_LABELS = 12;
const MAX_BAR_WIDTH = 40;
const LABEL_CHARS = 16;
/** Room for the tick labels left of the plot: a gap and the width of one character. */
const TICK_GAP = 10;
const TICK_CHAR_WIDTH = 6.5;

/** The bars of a token chart: input and output tokens, whole numbers. */
export const TOKEN_BARS = {
  measures: [
    { key: 'input', className: 'bar-input', unit: 'input tokens' },
    { key: 'output', className: 'bar-output', unit: 'output tokens' },
  ],
  whole: true,
  format: formatCount,
  tick: formatCompact,
};

/** The bar of a cost chart in `currency` (heights only: the tables show the exact amounts). */
export function costBars(currency) {
  return {
    measures: [{ key: 'cost', className: 'bar-cost', unit: currency }],
    whole: false,
    format: formatAmount,
    tick: formatAmount,
  };
}

/**
 * The smallest "nice" step (1, 2 or 5 × 10^k) that covers `max` in `ticks` steps; at least 1
 * for `whole` numbers.
 */
function niceStep(max, whole, ticks = 4) {
  const raw = (max > 0 ? max : 1) / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  const factor = normalized <= 1 ? 1 : normalized <= 2 ? 2 : normalized <= 5 ? 5 : 10;
  return whole ? Math.max(1, factor * magnitude) : factor * magnitude;
}

/**
 * The geometry of a grouped bar chart of `series` ([{label, <measure key>: number}]) with the
 * bars of `kind` in a WIDTH × HEIGHT box: the ticks, the baseline, and per group its centre
 * and one bar per measure.
 */
function chartLayout(series, kind) {
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const baseline = PAD.top + plotHeight;
  const max = Math.max(0, ...series.flatMap((group) => kind.measures.map((m) => group[m.key])));
  const step = niceStep(max, kind.whole);
  const steps = Math.max(1, Math.ceil(max / step));
  const top = step * steps;
  const widestTick = Math.max(...Array.from({ length: steps + 1 }, (_, i) => kind.tick(i * step).length));
  const left = Math.max(PAD.left, TICK_GAP + widestTick * TICK_CHAR_WIDTH);
  const plotWidth = WIDTH - left - PAD.right;
  const slot = plotWidth / Math.max(series.length, 1);
  const count = kind.measures.length;
  const barWidth = Math.min(Math.max((slot * 0.76) / count, 0.5), MAX_BAR_WIDTH);
  const ticks = Array.from({ length: steps + 1 }, (_, index) => ({
    value: index * step,
    y: baseline - ((index * step) / top) * plotHeight,
  }));
  const groups = series.map((group, index) => {
    const x = left + slot * (index + 0.5);
    const bars = kind.measures.map((measure, k) => {
      const height = (group[measure.key] / top) * plotHeight;
      return {
        measure, value: group[measure.key], x: x - (count * barWidth) / 2 + k * barWidth,
        y: baseline - height, width: barWidth, height,
      };
    });
    return { label: group.label, x, bars };
  });
  return { left, ticks, groups, baseline, labelEvery: Math.ceil(series.length / MAX_LABELS) };
}

/** A one-sentence summary of `series` (whose groups are called `noun`, e.g. "day") for screen readers. */
function chartSummary(title, series, noun, kind) {
  if (series.length === 0) {
    return `${title}: no usage in this range.`;
  }
  const groupTotal = (group) => kind.measures.reduce((total, m) => total + group[m.key], 0);
  const sums = kind.measures.map((m) =>
    `${kind.format(series.reduce((total, group) => total + group[m.key], 0))} ${m.unit}`);
  const busiest = series.reduce((best, group) => (groupTotal(group) > groupTotal(best) ? group : best));
  return `${title}: ${sums.join(' and ')} over ${plural(series.length, noun)}; the most in `
    + `${busiest.label} (${kind.format(groupTotal(busiest))}).`;
}

/**
 * An accessible SVG bar chart of the measures of `kind` (TOKEN_BARS by default, or costBars)
 * per group; `noun` names a group in the summary ("day", "model"), and `emptyText` is shown
 * when `series` is empty.
 */
export function barChart(series, { title, noun, emptyText, kind = TOKEN_BARS }) {
  const layout = chartLayout(series, kind);
  const svg = svgElement('svg', {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: 'img',
    'aria-label': series.length === 0 ? `${title}: ${emptyText}` : chartSummary(title, series, noun, kind),
    class: 'chart-svg',
  });
  svg.append(...layout.ticks.map((tick) => tickLine(tick, layout.left, kind)));
  if (series.length === 0) {
    svg.append(svgElement('text', { x: WIDTH / 2, y: HEIGHT / 2, 'text-anchor': 'middle', class: 'chart-empty' }, emptyText));
    return svg;
  }
  layout.groups.forEach((group, index) => {
    svg.append(...group.bars.map((bar) => barRect(bar, group.label, kind)));
    if (index % layout.labelEvery === 0) {
      svg.append(groupLabel(group, layout.baseline));
    }
  });
  return svg;
}

function tickLine(tick, left, kind) {
  const g = svgElement('g', { class: 'chart-tick' });
  g.append(
    svgElement('line', { x1: left, x2: WIDTH - PAD.right, y1: tick.y, y2: tick.y }),
    svgElement('text', { x: left - 6, y: tick.y + 4, 'text-anchor': 'end' }, kind.tick(tick.value)),
  );
  return g;
}

function barRect(bar, label, kind) {
  const rect = svgElement('rect', {
    x: bar.x, y: bar.y, width: bar.width, height: bar.height, class: bar.measure.className,
  });
  rect.append(svgElement('title', {}, `${label}: ${kind.format(bar.value)} ${bar.measure.unit}`));
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
