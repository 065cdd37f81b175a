// The API keys view: lists the project's keys in the region (masked, with expiry badges);
// owners and members also create keys (the secret is shown once in #secret-dialog), rename
// and delete them through the dialogs of index.html. Viewers get a read-only note instead.
// The dialogs live outside the views and are wired once, for whichever keys view is current:
// a write is never cancelled (the server would carry it out all the same), and the secret of
// a created key stays in its dialog until closed, even when the view is left meanwhile.

import { catalogPath, regionPath, requestJson } from '../api.js';
import {
  $, alertArea, announce, cell, clearError, dataTable, el, field, fillRows, keepFocusIn, showError,
  showMessage, showWhenLoaded, tableWrap, whileBusy,
} from '../dom.js';
import { expiry, formatDate, formatTime, plural } from '../format.js';

const TTLS = [
  ['never', 'Never'], ['1d', '1 day'], ['7d', '7 days'], ['30d', '30 days'], ['90d', '90 days'],
  ['365d', '365 days'],
];
const HEADERS = ['Name', 'Description', 'Key', 'State', 'Expires (UTC)', 'Allowed models'];
const WRITER_ROLES = ['owner', 'member'];

/** The keys view rendered last, the key a rename or delete dialog is open for, the key created last. */
let current = null;
let pending = null;
let createdId = null;

/** Renders the keys of ctx.project in ctx.region into `body`, with write controls for writers. */
export function render(body, ctx) {
  ctx.signal.addEventListener('abort', closeWriteDialogs, { once: true });
  const canWrite = WRITER_ROLES.includes(ctx.project.role);
  const headers = canWrite ? [...HEADERS, 'Actions'] : HEADERS;
  const view = {
    ctx,
    canWrite,
    table: dataTable('keys-table', `Keys of ${ctx.project.name} in region ${ctx.region}`, headers),
    listError: alertArea('keys-error'),
  };
  current = view;
  const list = [view.listError, tableWrap('Keys table', view.table)];
  if (canWrite) {
    const form = createForm(view);
    showWhenLoaded(body, [...list, form], [loadKeys(view), loadModelChoices(view)]);
  } else {
    const note = el('p', { id: 'readonly-note', class: 'note' },
      'Your role on this project is viewer: you can see keys but not create, rename or delete them.');
    showWhenLoaded(body, [note, ...list], [loadKeys(view)]);
  }
}

async function loadKeys(view) {
  const { project, region, signal } = view.ctx;
  try {
    const { tokens } = await requestJson(regionPath(project.id, region, '/tokens'), { signal });
    clearError(view.listError);
    fillRows(view.table, tokens.map((token) => keyRow(view, token)), 'No keys in this region yet.');
  } catch (error) {
    fillRows(view.table, [], 'The keys could not be loaded.');
    showError(view.listError, error);
  }
}

/** Reloads the list of the current keys view after a write, unless that view was left. */
async function refreshKeys() {
  if (current && !current.ctx.signal.aborted) {
    await loadKeys(current);
  }
}

function keyRow(view, token) {
  const row = el('tr', { 'data-key-id': token.id },
    cell('name', token.name),
    cell('description', token.description ?? ''),
    cell('masked', el('code', {}, token.maskedContent)),
    cell('state', el('span', { class: `badge state-${token.state}` }, token.state)),
    cell('validUntil', ...expiryContent(token.validUntil)),
    cell('allowedModels', token.allowedModels ? token.allowedModels.join(', ') || 'No models' : 'All models'));
  if (view.canWrite) {
    row.append(el('td', { class: 'row-actions' },
      actionButton('rename', 'Rename', token, () => openRename(view, token)),
      actionButton('delete', 'Delete', token, () => openDelete(view, token))));
  }
  return row;
}

function expiryContent(validUntil) {
  const status = expiry(validUntil);
  if (status.state === 'never') {
    return ['Never'];
  }
  if (status.state === 'expired') {
    return [formatTime(validUntil), ' ', el('span', { class: 'badge badge-expired' }, 'Expired')];
  }
  if (status.state === 'expiring') {
    const text = `Expires in ${plural(status.days, 'day')}`;
    return [formatTime(validUntil), ' ', el('span', { class: 'badge badge-expiring' }, text)];
  }
  return [formatTime(validUntil)];
}

function actionButton(action, label, token, onClick) {
  const button = el('button', { type: 'button', class: 'secondary small', 'data-action': action },
    label, el('span', { class: 'visually-hidden' }, ` key ${token.name}`));
  button.addEventListener('click', onClick);
  return button;
}

function createForm(view) {
  const name = el('input', { id: 'key-name', type: 'text', required: true, maxlength: 200, autocomplete: 'off' });
  const description = el('textarea', { id: 'key-description', maxlength: 2000, rows: 2 });
  const ttl = el('select', { id: 'key-ttl' }, ...TTLS.map(([value, label]) => el('option', { value }, label)));
  view.modelChoices = el('div', { class: 'checkboxes' });
  view.createError = alertArea('create-key-error');
  const form = el('form', { id: 'create-key', class: 'card', 'aria-labelledby': 'create-key-title' },
    el('h3', { id: 'create-key-title' }, 'Create a key'),
    field('Name', name, 'Up to 200 letters, digits, spaces, dashes and underscores.'),
    field('Description (optional)', description, 'Letters, digits, spaces and . : / - only.'),
    field('Expires after', ttl),
    el('fieldset', { 'aria-describedby': 'allowed-models-hint' },
      el('legend', {}, 'Allowed models'),
      el('p', { class: 'hint', id: 'allowed-models-hint' }, 'Leave every box unchecked to allow all models.'),
      view.modelChoices),
    view.createError,
    el('button', { type: 'submit' }, 'Create key'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    whileBusy(form.querySelector('button[type="submit"]'), () => createKey(view, form));
  });
  return form;
}

/**
 * A model's name for its checkbox: the id clients send, its display name when it differs, and
 * its retirement date when it is deprecated.
 */
function modelChoiceLabel(model) {
  const named = model.displayedName === model.modelId
    ? model.modelId
    : `${model.displayedName} (${model.modelId})`;
  const retires = model.lifecycle?.state === 'deprecated' && model.lifecycle.retires;
  return retires ? `${named}, deprecated: retires ${formatDate(retires)}` : named;
}

async function loadModelChoices(view) {
  const { region, signal } = view.ctx;
  try {
    const { models } = await requestJson(catalogPath(region, '/models'), { auth: false, signal });
    view.modelChoices.replaceChildren(...models
      .filter((model) => model.lifecycle?.state !== 'retired')
      .map((model) => el('label', { class: 'checkbox' },
        el('input', { type: 'checkbox', name: 'allowed-model', value: model.modelId }),
        ` ${modelChoiceLabel(model)}`)));
  } catch (error) {
    const area = alertArea('allowed-models-error');
    view.modelChoices.replaceChildren(area);
    showError(area, error);
  }
}

async function createKey(view, form) {
  const ttl = $('key-ttl').value;
  const description = $('key-description').value.trim();
  const allowedModels = [...form.querySelectorAll('input[name="allowed-model"]:checked')].map((box) => box.value);
  const body = {
    name: $('key-name').value.trim(),
    ...(description ? { description } : {}),
    ...(ttl === 'never' ? {} : { ttlDuration: ttl }),
    ...(allowedModels.length > 0 ? { allowedModels } : {}),
  };
  const path = regionPath(view.ctx.project.id, view.ctx.region, '/tokens');
  let token;
  try {
    ({ token } = await requestJson(path, { method: 'POST', body }));
  } catch (error) {
    showError(view.createError, error);
    return;
  }
  clearError(view.createError);
  form.reset();
  openSecret(token);
  announce(`Key “${token.name}” created.`);
  await refreshKeys();
}

/** Wires the secret, rename and delete dialogs of index.html, once for every keys view. */
function wireDialogs() {
  for (const id of ['secret-dialog', 'rename-dialog', 'delete-dialog']) {
    keepFocusIn($(id));
  }
  $('copy-secret').addEventListener('click', copySecret);
  $('secret-done').addEventListener('click', () => $('secret-dialog').close());
  $('secret-dialog').addEventListener('close', secretClosed);
  $('rename-form').addEventListener('submit', (event) => {
    event.preventDefault();
    saveRename();
  });
  $('rename-cancel').addEventListener('click', () => $('rename-dialog').close());
  $('delete-confirm').addEventListener('click', confirmDelete);
  $('delete-cancel').addEventListener('click', () => $('delete-dialog').close());
}

/** Closes the rename and delete dialogs (their view is being replaced); a write they sent goes on. */
function closeWriteDialogs() {
  $('rename-dialog').close();
  $('delete-dialog').close();
}

function openSecret(token) {
  createdId = token.id;
  $('secret-value').textContent = token.content;
  $('copy-secret').textContent = 'Copy';
  clearError($('copy-error'));
  $('secret-dialog').showModal();
  $('copy-secret').focus();
}

async function copySecret() {
  const secret = $('secret-value');
  try {
    await navigator.clipboard.writeText(secret.textContent);
    $('copy-secret').textContent = 'Copied';
  } catch {
    window.getSelection().selectAllChildren(secret);
    showMessage($('copy-error'), 'This browser did not allow copying (it needs HTTPS or localhost). '
      + 'The key is now selected: press Ctrl+C (⌘C on a Mac) to copy it.');
  }
}

/** Forgets the shown secret, then focuses the new key's row (or the create form) if the view is on screen. */
function secretClosed() {
  $('secret-value').textContent = '';
  window.getSelection().removeAllRanges();
  if (current && !current.ctx.signal.aborted && !focusAction(current, createdId, 'rename')) {
    $('key-name')?.focus();
  }
}

function openRename(view, token) {
  pending = { view, token };
  clearError($('rename-error'));
  $('rename-input').value = token.name;
  $('rename-dialog').showModal();
  $('rename-input').select();
}

async function saveRename() {
  const { view, token } = pending;
  const name = $('rename-input').value.trim();
  const send = () => requestJson(keyPath(view, token), { method: 'PATCH', body: { name } });
  if (!await writeFromDialog('rename', send)) {
    return;
  }
  announce(`Key renamed to “${name}”.`);
  await refreshKeys();
  if (view === current) {
    focusAction(view, token.id, 'rename');
  }
}

function openDelete(view, token) {
  pending = { view, token };
  clearError($('delete-error'));
  $('delete-name').textContent = token.name;
  $('delete-dialog').showModal();
  $('delete-cancel').focus();
}

async function confirmDelete() {
  const { view, token } = pending;
  const send = () => requestJson(keyPath(view, token), { method: 'DELETE' });
  if (!await writeFromDialog('delete', send)) {
    return;
  }
  announce(`Key “${token.name}” deleted.`);
  await refreshKeys();
  if (view === current) {
    view.table.parentElement.focus();
  }
}

function keyPath(view, token) {
  return regionPath(view.ctx.project.id, view.ctx.region, `/tokens/${encodeURIComponent(token.id)}`);
}

/**
 * Sends the write of dialog `name` (rename or delete) and closes the dialog; on failure shows
 * the error in the dialog and keeps it open. Answers whether the write succeeded.
 */
async function writeFromDialog(name, send) {
  const button = $(name === 'rename' ? 'rename-save' : 'delete-confirm');
  const sent = await whileBusy(button, async () => {
    try {
      await send();
      return true;
    } catch (error) {
      showError($(`${name}-error`), error);
      return false;
    }
  });
  if (sent) {
    $(`${name}-dialog`).close();
  }
  return Boolean(sent);
}

function focusAction(view, keyId, action) {
  const selector = `tr[data-key-id="${CSS.escape(keyId ?? '')}"] button[data-action="${action}"]`;
  const button = view.table.querySelector(selector);
  button?.focus();
  return Boolean(button);
}

wireDialogs();
