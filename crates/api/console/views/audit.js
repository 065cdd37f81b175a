// The audit log view: events of a UTC date range, oldest first, a page at a time (paging with
// nextCursor), filtered by action and outcome among the loaded events, and an NDJSON export
// of the whole range. Each first page (Apply) starts a new generation of loads: a page of an
// older one, first or next, arriving late is dropped.

import { download, projectPath, requestJson } from '../api.js';
import {
  alertArea, cell, clearError, dataTable, dateInput, el, field, fillRows, readRange, showError, showWhenLoaded,
  tableWrap, whileBusy,
} from '../dom.js';
import { formatTime, lastDays, rangeQuery, summarizeChanges } from '../format.js';

const ACTIONS = [
  'token.create', 'token.update', 'token.delete', 'token.expire', 'token.read', 'audit.read',
  'usage.read', 'management.authenticate', 'project.create', 'principal.add', 'principal.remove',
  'management_token.create', 'management_token.revoke',
];
const HEADERS = ['Time (UTC)', 'Actor', 'Action', 'Outcome', 'Target key', 'Changes'];
const PAGE_SIZE = 100;
const MIDNIGHT = 'T00:00:00Z';

/** Renders the audit log of ctx.project for the last 30 days into `body`. */
export function render(body, ctx) {
  const range = lastDays(30);
  const view = {
    ctx,
    events: [],
    cursor: null,
    generation: 0,
    from: dateInput('audit-from', range.from),
    to: dateInput('audit-to', range.to),
    action: el('select', { id: 'audit-action' }, el('option', { value: '' }, 'All actions'),
      ...ACTIONS.map((action) => el('option', { value: action }, action))),
    outcome: el('select', { id: 'audit-outcome' }, el('option', { value: '' }, 'All outcomes'),
      el('option', { value: 'success' }, 'success'), el('option', { value: 'failure' }, 'failure')),
    table: dataTable('audit-table', 'Audit events, oldest first', HEADERS),
    error: alertArea('audit-error'),
    summary: el('p', { class: 'hint', id: 'audit-summary' }),
    more: el('button', { id: 'audit-more', type: 'button', class: 'secondary' }, 'Load more events'),
    moreSlot: el('div'),
  };
  view.more.addEventListener('click', () => whileBusy(view.more, () => loadMore(view)));
  for (const filter of [view.action, view.outcome]) {
    filter.addEventListener('change', () => showEvents(view));
  }
  const content = [filterForm(view), view.error, view.summary, tableWrap('Audit events', view.table), view.moreSlot];
  showWhenLoaded(body, content, [loadFirstPage(view)]);
}

function filterForm(view) {
  const exportButton = el('button', { id: 'audit-export', type: 'button', class: 'secondary' }, 'Export NDJSON');
  const exportError = alertArea('audit-export-error');
  exportButton.addEventListener('click', () => whileBusy(exportButton, () => exportRange(view, exportError)));
  const apply = el('button', { id: 'audit-apply', type: 'submit' }, 'Apply');
  const form = el('form', { id: 'audit-form', class: 'card filters', 'aria-label': 'Audit log filters' },
    field('From (UTC)', view.from),
    field('To (UTC, included)', view.to),
    field('Action', view.action),
    field('Outcome', view.outcome),
    apply,
    el('div', { class: 'filters-end' }, exportButton),
    exportError);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    whileBusy(apply, () => loadFirstPage(view));
  });
  return form;
}

/** Starts a new generation: the first page of the chosen range, whatever older loads answer. */
async function loadFirstPage(view) {
  const range = readRange(view.from, view.to, view.error);
  if (range) {
    view.generation += 1;
    view.query = rangeQuery(range, MIDNIGHT);
    view.cursor = null;
    await loadPage(view, null);
  }
}

/** Appends the next page of the current generation (nothing while its first page loads). */
async function loadMore(view) {
  if (view.cursor) {
    await loadPage(view, view.cursor);
  }
}

async function loadPage(view, cursor) {
  const { project, signal } = view.ctx;
  const generation = view.generation;
  const paging = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
  let page;
  try {
    page = await requestJson(projectPath(project.id, `/audit-log?${view.query}&limit=${PAGE_SIZE}${paging}`), { signal });
  } catch (error) {
    if (generation === view.generation) {
      pageFailed(view, cursor, error);
    }
    return;
  }
  if (generation === view.generation) {
    clearError(view.error);
    view.events = cursor ? [...view.events, ...page.events] : page.events;
    view.cursor = page.nextCursor ?? null;
    showEvents(view);
  }
}

/** Shows why a page failed; after a failed first page, nothing of the previous range stays. */
function pageFailed(view, cursor, error) {
  showError(view.error, error);
  if (!cursor) {
    view.events = [];
    view.summary.textContent = '';
    showMoreButton(view);
    fillRows(view.table, [], 'The audit log could not be loaded.');
  }
}

/** Shows the loaded events that match the action and outcome filters. */
function showEvents(view) {
  const shown = view.events.filter((event) =>
    (!view.action.value || event.action === view.action.value)
    && (!view.outcome.value || event.outcome === view.outcome.value));
  const empty = view.events.length > 0 ? 'No loaded event matches these filters.' : 'No events in this range.';
  fillRows(view.table, shown.map(eventRow), empty);
  view.summary.textContent = `Showing ${shown.length} of ${view.events.length} loaded events`
    + (view.cursor ? '; more events are available.' : '.');
  showMoreButton(view);
}

/** Puts #audit-more under the table while there is a next page, else takes it away. */
function showMoreButton(view) {
  const hadFocus = view.more === document.activeElement;
  view.moreSlot.replaceChildren(...(view.cursor ? [view.more] : []));
  if (hadFocus && !view.cursor) {
    view.table.parentElement.focus();
  }
}

function eventRow(event) {
  const actor = event.actor ? event.actor.email || event.actor.subject : 'System or unauthenticated caller';
  const outcome = event.reason ? `${event.outcome}: ${event.reason}` : event.outcome;
  return el('tr', { 'data-event-id': event.id },
    cell('time', formatTime(event.time)),
    cell('actor', actor),
    cell('action', el('code', {}, event.action)),
    cell('outcome', el('span', { class: `badge outcome-${event.outcome}` }, outcome)),
    cell('target', event.targetTokenId ?? '—'),
    cell('changes', summarizeChanges(event.changes) || '—'));
}

async function exportRange(view, area) {
  const range = readRange(view.from, view.to, area);
  if (!range) {
    return;
  }
  try {
    const path = projectPath(view.ctx.project.id, `/audit-log/export?${rangeQuery(range, MIDNIGHT)}`);
    await download(path, 'application/x-ndjson',
      `audit-log-${range.from}-to-${range.to}.ndjson`, view.ctx.signal);
    clearError(area);
  } catch (error) {
    showError(area, error);
  }
}
