// The announcements view: every announced model deprecation, newest first, with its dates and
// successor, as published at GET /v1/announcements.

import { requestJson } from '../api.js';
import { alertArea, el, showError, showWhenLoaded } from '../dom.js';
import { formatDate, lifecycleSummary } from '../format.js';

/** Renders the deprecation announcements into `body`. */
export function render(body, ctx) {
  const list = el('ul', { id: 'announcements-list', class: 'announcements' });
  const error = alertArea('announcements-error');
  showWhenLoaded(body, [
    el('p', {}, 'When a model is to be retired, it is announced here first, with its successor.'),
    error,
    list,
  ], [loadAnnouncements(list, error, ctx.signal)]);
}

async function loadAnnouncements(list, error, signal) {
  try {
    const { announcements } = await requestJson('/v1/announcements', { auth: false, signal });
    list.replaceChildren(...(announcements.length > 0
      ? announcements.map(announcementItem)
      : [el('li', { class: 'hint' }, 'No model deprecation has been announced.')]));
  } catch (failure) {
    list.replaceChildren();
    showError(error, failure);
  }
}

function announcementItem(announcement) {
  return el('li', { 'data-model': announcement.model, class: `lifecycle-${announcement.state}` },
    el('h3', {}, announcement.displayedName, ' ', el('span', { class: 'model-id' }, announcement.model)),
    el('p', {}, lifecycleSummary(announcement), '.'),
    el('p', { class: 'hint' }, `Announced ${formatDate(announcement.announced)}.`));
}
