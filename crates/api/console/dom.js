// Small DOM helpers shared by the views: element creation without innerHTML (text is always
// set as text, so API data cannot inject markup), scrollable table wrappers, form fields with
// labels, date fields, error alerts that say what to do, and the global status line.

import { explain, isAbort } from './api.js';
import { EARLIEST_DATE, rangeProblem, today } from './format.js';

const FOCUSABLE = 'a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])';

/** The element with id `id`, or null. */
export const $ = (id) => document.getElementById(id);

/**
 * A new `tag` element with `attributes` (true → present without value, false/null/undefined
 * → absent) and `children` (nodes, or strings added as text; null and false are skipped).
 */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === true) {
      element.setAttribute(name, '');
    } else if (value !== false && value !== null && value !== undefined) {
      element.setAttribute(name, String(value));
    }
  }
  element.append(...children.filter((child) => child !== null && child !== false && child !== undefined));
  return element;
}

/** A table with a caption and column headers, and an empty tbody to fill. */
export function dataTable(id, caption, headers) {
  const headRow = el('tr', {}, ...headers.map((header) => el('th', { scope: 'col' }, header)));
  return el('table', { id }, el('caption', {}, caption), el('thead', {}, headRow), el('tbody'));
}

/** `table` in a keyboard-scrollable region named `label` (tables scroll sideways on phones). */
export function tableWrap(label, table) {
  return el('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: 0 }, table);
}

/** A table cell with `data-field="field"`. */
export function cell(field, ...children) {
  return el('td', { 'data-field': field }, ...children);
}

/**
 * Puts `rows` in the body of `table`, or a single row spanning every column that says
 * `emptyText` (loading, nothing found, failed) when there are none.
 */
export function fillRows(table, rows, emptyText) {
  const columns = table.tHead.rows[0].cells.length;
  const message = () => el('tr', { class: 'message-row' }, el('td', { colspan: columns }, emptyText));
  table.tBodies[0].replaceChildren(...(rows.length > 0 ? rows : [message()]));
}

/** A labelled form field: label, control, and an optional hint tied to the control. */
export function field(label, control, hint) {
  const hintElement = hint ? el('p', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintElement) {
    control.setAttribute('aria-describedby', hintElement.id);
  }
  return el('div', { class: 'field' }, el('label', { for: control.id }, label), control, hintElement);
}

/** A required UTC date field with id `id` and value `value`, from EARLIEST_DATE to today. */
export function dateInput(id, value) {
  return el('input', { id, type: 'date', required: true, min: EARLIEST_DATE, max: today(), value });
}

/** An empty, hidden alert area for the errors of one action. */
export function alertArea(id) {
  return el('p', { class: 'alert', role: 'alert', id, hidden: true });
}

/** Shows `text` in the (alert) area `area`. */
export function showMessage(area, text) {
  area.textContent = text;
  area.hidden = false;
}

/** Shows in `area` the error's message and what to do about it; a cancelled request is ignored. */
export function showError(area, error) {
  if (!isAbort(error)) {
    showMessage(area, explain(error));
  }
}

/** Empties and hides an alert area. */
export function clearError(area) {
  area.textContent = '';
  area.hidden = true;
}

/**
 * Runs `task` while `button` is marked busy (aria-disabled, so that it keeps the keyboard
 * focus, unlike a disabled button); a click or submit while busy is ignored. Answers what
 * `task` answers, or undefined when ignored.
 */
export async function whileBusy(button, task) {
  if (button.getAttribute('aria-disabled') === 'true') {
    return undefined;
  }
  button.setAttribute('aria-disabled', 'true');
  try {
    return await task();
  } finally {
    button.removeAttribute('aria-disabled');
  }
}

/**
 * Keeps Tab and Shift+Tab cycling among the visible controls of the modal `dialog`: from its
 * last control to its first and back, where the browser would let the focus leave the page.
 */
export function keepFocusIn(dialog) {
  dialog.addEventListener('keydown', (event) => {
    if (event.key !== 'Tab') {
      return;
    }
    const controls = [...dialog.querySelectorAll(FOCUSABLE)]
      .filter((control) => !control.disabled && control.getClientRects().length > 0);
    const [first, last] = [controls[0], controls.at(-1)];
    if (first && document.activeElement === (event.shiftKey ? first : last)) {
      event.preventDefault();
      (event.shiftKey ? last : first).focus();
    }
  });
}

/**
 * Shows "Loading…" in `body` until every promise of `loads` has settled, then `nodes`: the
 * view appears once with its data, so that nothing moves under the reader while it loads.
 */
export async function showWhenLoaded(body, nodes, loads) {
  body.append(el('p', { class: 'loading' }, 'Loading…'));
  await Promise.allSettled(loads);
  body.replaceChildren(...nodes);
}

/** Says `text` in the global status line (#status), read out politely by screen readers. */
export function announce(text) {
  const status = $('status');
  status.textContent = '';
  requestAnimationFrame(() => {
    status.textContent = text;
  });
}

/**
 * The {from, to} dates of two date inputs, or null after saying in `area` what is wrong with
 * the range (see rangeProblem).
 */
export function readRange(fromInput, toInput, area) {
  const range = { from: fromInput.value, to: toInput.value };
  const problem = rangeProblem(range.from, range.to);
  if (problem) {
    showMessage(area, problem);
    return null;
  }
  return range;
}
