// The models view: the region's catalog with type, plan, prices (from the SKUs), context
// length (from each model's details call), licence and source link; deprecated and retired
// models are flagged in a banner above the table and by a badge on their row.

import { requestJson } from '../api.js';
import { alertArea, cell, dataTable, el, fillRows, showError, showWhenLoaded, tableWrap } from '../dom.js';
import { formatCount, lifecycleSummary, skuPrice } from '../format.js';

const HEADERS = [
  'Model', 'Type', 'Plan', 'Input price per 1M tokens', 'Output price per 1M tokens',
  'Context length (tokens)', 'Licence', 'Source',
];
const ENDING = ['deprecated', 'retired'];

/** Renders the model catalog of ctx.region into `body`. */
export function render(body, ctx) {
  const view = {
    ctx,
    error: alertArea('models-error'),
    bannerSlot: el('div'),
    table: dataTable('models-table', `Models of region ${ctx.region}`, HEADERS),
  };
  showWhenLoaded(body, [view.bannerSlot, view.error, tableWrap('Models table', view.table)], [loadModels(view)]);
}

async function loadModels(view) {
  const { region, signal } = view.ctx;
  try {
    const { models } = await requestJson(`/v1/regions/${encodeURIComponent(region)}/models`, { auth: false, signal });
    const ending = models.filter(isEnding);
    if (ending.length > 0) {
      view.bannerSlot.append(banner(ending));
    }
    const rows = models.map(modelRow);
    fillRows(view.table, rows, 'This region has no models.');
    rows.forEach((row, index) => loadContextLength(view, models[index], row));
  } catch (error) {
    showError(view.error, error);
    fillRows(view.table, [], 'The models could not be loaded.');
  }
}

function isEnding(model) {
  return ENDING.includes(model.lifecycle?.state);
}

function banner(models) {
  return el('div', { id: 'deprecation-banner', class: 'banner', role: 'note', 'aria-labelledby': 'deprecation-title' },
    el('h3', { id: 'deprecation-title' }, 'Models being retired'),
    el('p', {}, 'Move your applications to the successor before the retirement date.'),
    el('ul', {}, ...models.map((model) => el('li', {},
      el('strong', {}, model.displayedName), ` (${model.modelId}): ${lifecycleSummary(model.lifecycle)}`))));
}

function modelRow(model) {
  const ending = isEnding(model);
  return el('tr', { 'data-model': model.modelId, class: ending ? 'deprecated' : null },
    el('th', { scope: 'row', 'data-field': 'name' },
      el('span', { class: 'model-name' }, model.displayedName),
      el('span', { class: 'model-id' }, model.modelId),
      ending ? el('span', { class: 'badge badge-deprecated' }, lifecycleSummary(model.lifecycle)) : null),
    cell('type', model.type),
    cell('plan', model.category),
    cell('inputPrice', skuPrice(model.skus, 'input') ?? '—'),
    cell('outputPrice', skuPrice(model.skus, 'output') ?? '—'),
    cell('contextLength', 'Loading…'),
    cell('license', model.license || '—'),
    cell('source', sourceLink(model)));
}

/** A link to the model's source page named by its host, only for http(s) addresses. */
function sourceLink(model) {
  if (!/^https?:\/\//i.test(model.url ?? '')) {
    return model.url || '—';
  }
  return el('a', { href: model.url, rel: 'noopener noreferrer' },
    new URL(model.url).hostname, el('span', { class: 'visually-hidden' }, `: source of ${model.displayedName}`));
}

async function loadContextLength(view, model, row) {
  const { region, signal } = view.ctx;
  const kind = model.type === 'embedding' ? 'embedding' : 'chat';
  const target = row.querySelector('[data-field="contextLength"]');
  try {
    const path = `/v1/regions/${encodeURIComponent(region)}/${kind}/models/${encodeURIComponent(model.id)}`;
    const { model: details } = await requestJson(path, { auth: false, signal });
    target.textContent = formatCount(details.contextLength);
  } catch {
    target.textContent = 'Unknown';
  }
}
