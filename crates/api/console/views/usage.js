// The usage and cost view: a UTC date range, totals, bar charts and tables of tokens per day
// and per model, a CSV download of the report, and the current per-minute rate limits with a
// meter of the tokens used this minute. Money is shown exactly as the API writes it.

import { download, projectPath, requestJson } from '../api.js';
import {
  alertArea, cell, clearError, dataTable, dateInput, el, field, fillRows, readRange, showError, showWhenLoaded,
  tableWrap, whileBusy,
} from '../dom.js';
import { barChart, costBars } from '../chart.js';
import {
  datesBetween, formatCount, formatMoney, lastDays, rangeQuery, usedThisMinute,
} from '../format.js';

const NO_USAGE = 'No usage in this range.';
const NOT_LOADED = 'The usage could not be loaded.';
const GROUP_HEADERS = ['Requests', 'Input tokens', 'of which cached', 'Output tokens', 'Cost'];
const LIMIT_HEADERS = [
  'Model', 'Plan', 'Requests per minute', 'Requests left', 'Tokens per minute', 'Tokens left',
  'Tokens used this minute', 'Resets in',
];

/** Renders the usage report of ctx.project for the last 30 days, and its rate limits, into `body`. */
export function render(body, ctx) {
  const range = lastDays(30);
  const view = {
    ctx,
    from: dateInput('usage-from', range.from),
    to: dateInput('usage-to', range.to),
    csvGroup: el('select', { id: 'usage-csv-group' },
      el('option', { value: 'day' }, 'day'), el('option', { value: 'model' }, 'model'),
      el('option', { value: 'key' }, 'key')),
    error: alertArea('usage-error'),
    csvError: alertArea('usage-csv-error'),
    total: dataTable('usage-total', 'Totals for the range', ['Currency', ...GROUP_HEADERS, 'Billed']),
    estimated: el('p', { class: 'hint', id: 'usage-estimated' }),
    dayChart: chartFigure('chart-day', 'Input and output tokens per day (UTC).', TOKEN_LEGEND),
    modelChart: chartFigure('chart-model', 'Input and output tokens per model.', TOKEN_LEGEND),
    dayCostChart: chartFigure('chart-cost-day', 'Cost per day (UTC).', COST_LEGEND),
    modelCostChart: chartFigure('chart-cost-model', 'Cost per model.', COST_LEGEND),
    byDay: dataTable('usage-by-day', 'Usage per day (UTC)', ['Day', ...GROUP_HEADERS]),
    byModel: dataTable('usage-by-model', 'Usage per model', ['Model', ...GROUP_HEADERS]),
    limitsLoad: 0,
  };
  showWhenLoaded(body, [
    rangeForm(view),
    view.error,
    el('h3', {}, 'Totals'), tableWrap('Usage totals', view.total), view.estimated,
    el('div', { class: 'charts' }, view.dayChart, view.modelChart, view.dayCostChart, view.modelCostChart),
    el('h3', {}, 'Per day'), tableWrap('Usage per day', view.byDay),
    el('h3', {}, 'Per model'), tableWrap('Usage per model', view.byModel),
    limitsSection(view),
  ], [loadUsage(view), loadLimits(view)]);
}

function rangeForm(view) {
  const csv = el('button', { id: 'usage-csv', type: 'button', class: 'secondary' }, 'Download CSV');
  csv.addEventListener('click', () => whileBusy(csv, () => downloadCsv(view)));
  const apply = el('button', { id: 'usage-apply', type: 'submit' }, 'Apply');
  const form = el('form', { id: 'usage-form', class: 'card filters', 'aria-label': 'Usage date range' },
    field('From (UTC)', view.from),
    field('To (UTC, included)', view.to),
    apply,
    el('div', { class: 'filters-end' }, field('CSV grouped by', view.csvGroup), csv),
    view.csvError);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    whileBusy(apply, () => loadUsage(view));
  });
  return form;
}

/** The path of the usage report of `range` (inclusive dates) grouped by `groupBy`. */
function reportPath(view, range, groupBy) {
  return projectPath(view.ctx.project.id, `/usage?${rangeQuery(range)}&groupBy=${groupBy}`);
}

async function loadUsage(view) {
  const range = readRange(view.from, view.to, view.error);
  if (!range) {
    return;
  }
  const report = (groupBy) => requestJson(reportPath(view, range, groupBy), { signal: view.ctx.signal });
  try {
    const [byDay, byModel] = await Promise.all([report('day'), report('model')]);
    clearError(view.error);
    showTotals(view, byDay);
    fillRows(view.byDay, byDay.groups.map(groupRow), NO_USAGE);
    fillRows(view.byModel, byModel.groups.map(groupRow), NO_USAGE);
    const during = `${range.from} to ${range.to}`;
    drawChart(view.dayChart, everyDay(groupSeries(byDay.groups), range, { input: 0, output: 0 }),
      { title: `Tokens per day, ${during}`, noun: 'day' });
    drawChart(view.modelChart, groupSeries(byModel.groups), { title: `Tokens per model, ${during}`, noun: 'model' });
    const currency = byDay.total[0]?.currency ?? '';
    const kind = costBars(currency);
    const inCurrency = currency ? ` in ${currency}` : '';
    drawChart(view.dayCostChart, everyDay(costSeries(byDay.groups, currency), range, { cost: 0 }),
      { title: `Cost per day${inCurrency}, ${during}`, noun: 'day', kind });
    drawChart(view.modelCostChart, costSeries(byModel.groups, currency),
      { title: `Cost per model${inCurrency}, ${during}`, noun: 'model', kind });
  } catch (error) {
    showError(view.error, error);
    usageFailed(view);
  }
}

/** Shows in every table and chart that the usage could not be loaded (none of it stays "Loading…"). */
function usageFailed(view) {
  for (const table of [view.total, view.byDay, view.byModel]) {
    fillRows(table, [], NOT_LOADED);
  }
  view.estimated.textContent = '';
  drawChart(view.dayChart, [], { title: 'Tokens per day', emptyText: NOT_LOADED });
  drawChart(view.modelChart, [], { title: 'Tokens per model', emptyText: NOT_LOADED });
  drawChart(view.dayCostChart, [], { title: 'Cost per day', emptyText: NOT_LOADED });
  drawChart(view.modelCostChart, [], { title: 'Cost per model', emptyText: NOT_LOADED });
}

function showTotals(view, report) {
  const billed = new Map(report.billedTotal.map((line) => [line.currency, line.amount]));
  const rows = report.total.map((total) => el('tr', { 'data-currency': total.currency },
    el('th', { scope: 'row' }, total.currency),
    ...countCells(total),
    cell('billed', billed.has(total.currency) ? formatMoney(billed.get(total.currency), total.currency) : '—')));
  fillRows(view.total, rows, NO_USAGE);
  const estimated = report.total.reduce((sum, total) => sum + total.estimatedRequests, 0);
  view.estimated.textContent = estimated > 0
    ? `${formatCount(estimated)} of these requests have estimated token counts (the model did not report them).`
    : '';
}

function groupRow(group) {
  return el('tr', { 'data-group': group.group, 'data-currency': group.currency },
    el('th', { scope: 'row', 'data-field': 'group' }, group.group),
    ...countCells(group));
}

function countCells(usage) {
  return [
    cell('requests', formatCount(usage.requests)),
    cell('inputTokens', formatCount(usage.inputTokens)),
    cell('cachedInputTokens', formatCount(usage.cachedInputTokens ?? 0)),
    cell('outputTokens', formatCount(usage.outputTokens)),
    cell('cost', formatMoney(usage.cost, usage.currency)),
  ];
}

/** Tokens per group, summed over currencies, in the API's order. */
function groupSeries(groups) {
  const series = new Map();
  for (const group of groups) {
    const entry = series.get(group.group) ?? { label: group.group, input: 0, output: 0 };
    entry.input += group.inputTokens;
    entry.output += group.outputTokens;
    series.set(group.group, entry);
  }
  return [...series.values()];
}

/** `series` with an entry for every day of the range: a day without usage gets `zero`. */
function everyDay(series, range, zero) {
  const byDay = new Map(series.map((entry) => [entry.label, entry]));
  return datesBetween(range.from, range.to).map((day) => byDay.get(day) ?? { label: day, ...zero });
}

/** The cost of each group in `currency` (the report's first), as numbers for the bar heights. */
function costSeries(groups, currency) {
  return groups
    .filter((group) => group.currency === currency)
    .map((group) => ({ label: group.group, cost: Number(group.cost) }));
}

const TOKEN_LEGEND = [['swatch-input', 'Input tokens'], ['swatch-output', 'Output tokens']];
const COST_LEGEND = [['swatch-cost', 'Cost (the tables give the exact amounts)']];

function chartFigure(id, caption, legendItems) {
  const legend = el('span', { class: 'legend' }, ...legendItems.flatMap(([swatch, text]) => [
    el('span', { class: `swatch ${swatch}`, 'aria-hidden': 'true' }), text]));
  return el('figure', { id, class: 'chart' },
    el('div', { class: 'chart-scroll', role: 'region', tabindex: 0, 'aria-label': caption },
      barChart([], { title: caption, emptyText: 'Loading…' })),
    el('figcaption', {}, caption, ' ', legend));
}

/** Replaces the chart of `figure` with one of `series`; `options` as for barChart. */
function drawChart(figure, series, options) {
  figure.querySelector('svg').replaceWith(barChart(series, { emptyText: NO_USAGE, ...options }));
}

async function downloadCsv(view) {
  const range = readRange(view.from, view.to, view.csvError);
  if (!range) {
    return;
  }
  const groupBy = view.csvGroup.value;
  try {
    await download(reportPath(view, range, groupBy), 'text/csv',
      `usage-${range.from}-to-${range.to}-by-${groupBy}.csv`, view.ctx.signal);
    clearError(view.csvError);
  } catch (error) {
    showError(view.csvError, error);
  }
}

function limitsSection(view) {
  view.limits = dataTable('limits-table', 'Rate limits of the current minute', LIMIT_HEADERS);
  view.limitsError = alertArea('limits-error');
  const refresh = el('button', { id: 'limits-refresh', type: 'button', class: 'secondary' }, 'Refresh limits');
  refresh.addEventListener('click', () => whileBusy(refresh, () => loadLimits(view)));
  return el('section', { 'aria-labelledby': 'limits-title' },
    el('div', { class: 'heading-row' }, el('h3', { id: 'limits-title' }, 'Rate limits'), refresh),
    el('p', { class: 'hint' }, 'What each model allows per minute, and how much of this minute\u2019s budget is used.'),
    view.limitsError,
    tableWrap('Rate limits table', view.limits));
}

/** Loads the current limits; an answer overtaken by a later load is dropped. */
async function loadLimits(view) {
  const { project, signal } = view.ctx;
  view.limitsLoad += 1;
  const load = view.limitsLoad;
  try {
    const answer = await requestJson(projectPath(project.id, '/limits'), { signal });
    if (load !== view.limitsLoad) {
      return;
    }
    clearError(view.limitsError);
    const empty = answer.available === false
      ? 'The rate limiter cannot be reached right now, so the current limits are unknown. Try again in a moment.'
      : 'No model is served, so there are no limits to show.';
    fillRows(view.limits, answer.limits.map(limitRow), empty);
  } catch (error) {
    if (load === view.limitsLoad) {
      showError(view.limitsError, error);
      fillRows(view.limits, [], 'The limits could not be loaded.');
    }
  }
}

function limitRow(limit) {
  const used = usedThisMinute(limit.tokensPerMinute, limit.tokensRemaining);
  const max = Math.max(limit.tokensPerMinute, 1);
  const meter = el('meter', {
    min: 0, max, value: Math.min(used, max), low: max * 0.5, high: max * 0.8, optimum: 0,
    'aria-label': `Tokens used this minute by ${limit.model}`,
  });
  return el('tr', { 'data-model': limit.model },
    el('th', { scope: 'row' }, limit.model),
    cell('plan', limit.plan),
    cell('requestsPerMinute', formatCount(limit.requestsPerMinute)),
    cell('requestsRemaining', formatCount(limit.requestsRemaining)),
    cell('tokensPerMinute', formatCount(limit.tokensPerMinute)),
    cell('tokensRemaining', formatCount(limit.tokensRemaining)),
    cell('tokensUsed', meter, ` ${formatCount(used)} of ${formatCount(limit.tokensPerMinute)}`),
    cell('reset', `${Math.ceil(limit.tokensResetMs / 1000)} s`));
}
