// The models view: the region's catalog with type, plan, prices (from the SKUs), context
// length (from each model's details call), licence and source link; deprecated and retired
// models are flagged in a banner above the table and by a badge on their row.

import { catalogPath, explain, isAbort, requestJson } from '../api.js';
import {
  alertArea, cell, dataTable, el, fillRows, showError, showMessage, showWhenLoaded, tableWrap,
} from '../dom.js';
import { formatCount, lifecycleSummary, skuPrice } from '../format.js';

const HEADERS = [
  'Model', 'Type', 'Plan', 'Input price per 1M tokens',
  'Cached input price per 1M tokens', 'Output price per 1M tokens',
  'Context length (tokens)', 'Licence', 'Source',
];
const ENDING = ['deprecated', 'retired'];
const DETAIL_REQUESTS_AT_ONCE = 4;
const WEB_PROTOCOLS = ['http:', 'https:'];

/** Renders the model catalog of ctx.region into `body`. */
export function render(body, ctx) {
  const view = {
    ctx,
    error: alertArea('models-error'),
    detailsError: alertArea('models-details-error'),
    bannerSlot: el('div'),
    table: dataTable('models-table', `Models of region ${ctx.region}`, HEADERS),
  };
  const content = [view.bannerSlot, view.error, view.detailsError, tableWrap('Models table', view.table)];
  showWhenLoaded(body, content, [loadModels(view)]);
}

async function loadModels(view) {
  const { region, signal } = view.ctx;
  try {
    const { models } = await requestJson(catalogPath(region, '/models'), { auth: false, signal });
    const ending = models.filter(isEnding);
    if (ending.length > 0) {
      view.bannerSlot.append(banner(ending));
    }
    const rows = models.map(modelRow);
    fillRows(view.table, rows, 'This region has no models.');
    loadContextLengths(view, models.map((model, index) => ({ model, row: rows[index] })));
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
    cell('cachedInputPrice', skuPrice(model.skus, 'cached-input') ?? '—'),
    cell('outputPrice', skuPrice(model.skus, 'output') ?? '—'),
    cell('contextLength', 'Loading…'),
    cell('license', model.license || '—'),
    cell('source', sourceLink(model)));
}

/**
 * A link to the model's source page named by its host, only for a well-formed http(s)
 * address; anything else (e.g. "https://" alone) is shown as text.
 */
function sourceLink(model) {
  const url = webUrl(model.url);
  if (!url) {
    return model.url || '—';
  }
  return el('a', { href: model.url, rel: 'noopener noreferrer' },
    url.hostname, el('span', { class: 'visually-hidden' }, `: source of ${model.displayedName}`));
}

function webUrl(text) {
  try {
    const url = new URL(text ?? '');
    return WEB_PROTOCOLS.includes(url.protocol) && url.hostname ? url : null;
  } catch {
    return null;
  }
}

/** Fills in the context length of each {model, row}, DETAIL_REQUESTS_AT_ONCE requests at a time. */
async function loadContextLengths(view, queue) {
  const worker = async () => {
    while (queue.length > 0 && !view.ctx.signal.aborted) {
      const { model, row } = queue.shift();
      await loadContextLength(view, model, row);
    }
  };
  await Promise.all(Array.from({ length: DETAIL_REQUESTS_AT_ONCE }, worker));
}

async function loadContextLength(view, model, row) {
  const { region, signal } = view.ctx;
  const kind = model.type === 'embedding' ? 'embedding' : 'chat';
  const target = row.querySelector('[data-field="contextLength"]');
  try {
    const path = catalogPath(region, `/${kind}/models/${encodeURIComponent(model.id)}`);
    const { model: details } = await requestJson(path, { auth: false, signal });
    target.textContent = formatCount(details.contextLength);
  } catch (error) {
    if (!isAbort(error)) {
      target.textContent = 'Unknown';
      detailsFailed(view, error);
    }
  }
}

/** Says once, above the table, why some context lengths are unknown. */
function detailsFailed(view, error) {
  if (view.detailsError.hidden) {
    showMessage(view.detailsError, `The context length of some models could not be loaded. ${explain(error)}`);
  }
}
