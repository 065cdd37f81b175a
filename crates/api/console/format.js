// Pure formatting and date helpers shared by the console's views: counts, money, UTC dates,
// key expiry, prices, rate-limit usage, audit changes and model lifecycles. No DOM, no
// network: easy to test in isolation.

const DAY_MS = 24 * 60 * 60 * 1000;
const NEVER_EXPIRES = '0001-01-01';
const MAX_RANGE_DAYS = 3660;

/** The earliest date the date fields accept (their `min`). */
export const EARLIEST_DATE = '2000-01-01';
const counts = new Intl.NumberFormat('en-US');
const compactCounts = new Intl.NumberFormat('en-US', { notation: 'compact' });
const chartAmounts = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 3, maximumFractionDigits: 12 });

/** A count with thousands separators, e.g. 12345 → "12,345". */
export function formatCount(value) {
  return counts.format(value);
}

/** A count in short form for chart axes, e.g. 12345 → "12K". */
export function formatCompact(value) {
  return compactCounts.format(value);
}

/** An amount of money as a chart shows it (at most 3 significant digits, never in exponent form). */
export function formatAmount(value) {
  return chartAmounts.format(value);
}

/** Money exactly as the API gave it (a decimal string) followed by its currency. */
export function formatMoney(amount, currency) {
  return `${amount} ${currency}`;
}

/** The UTC date `days` days after `ymd` (YYYY-MM-DD); `days` may be negative. */
export function addDays(ymd, days) {
  return new Date(Date.parse(`${ymd}T00:00:00Z`) + days * DAY_MS).toISOString().slice(0, 10);
}

/** Today's UTC date (YYYY-MM-DD). */
export function today(now = new Date()) {
  return now.toISOString().slice(0, 10);
}

/** The inclusive range of the last `days` UTC days, today included: {from, to}. */
export function lastDays(days, now = new Date()) {
  const to = today(now);
  return { from: addDays(to, 1 - days), to };
}

/** Every UTC date from `from` to `to`, both included (empty when `from` is after `to`). */
export function datesBetween(from, to) {
  const dates = [];
  for (let day = from; day <= to; day = addDays(day, 1)) {
    dates.push(day);
  }
  return dates;
}

/**
 * What is wrong with the inclusive date range `from`–`to` (YYYY-MM-DD), in words, or null when
 * it is fine: both dates set, between EARLIEST_DATE and today, in order, and at most
 * MAX_RANGE_DAYS days long.
 */
export function rangeProblem(from, to, now = new Date()) {
  const latest = today(now);
  if (!isDate(from) || !isDate(to)) {
    return 'Choose a start date and an end date, then try again.';
  }
  if (from < EARLIEST_DATE || to > latest) {
    return `Choose dates from ${EARLIEST_DATE} to today (${latest}, UTC), then try again.`;
  }
  if (from > to) {
    return 'The start date is after the end date: choose a start on or before the end, then try again.';
  }
  const days = (Date.parse(to) - Date.parse(from)) / DAY_MS + 1;
  if (days > MAX_RANGE_DAYS) {
    return `This range is ${formatCount(days)} days long: choose at most ${formatCount(MAX_RANGE_DAYS)} days `
      + '(about ten years), then try again.';
  }
  return null;
}

/**
 * The query string `from=…&to=…` of the inclusive range {from, to} for the API, whose `to` is
 * exclusive (so it gets the day after); `time` follows each date, e.g. "T00:00:00Z" for RFC 3339.
 */
export function rangeQuery(range, time = '') {
  return `from=${range.from}${time}&to=${addDays(range.to, 1)}${time}`;
}

function isDate(text) {
  return /^\d{4}-\d{2}-\d{2}$/.test(text) && !Number.isNaN(Date.parse(`${text}T00:00:00Z`))
    && addDays(text, 0) === text;
}

/** An RFC 3339 time as "YYYY-MM-DD HH:MM:SS UTC". */
export function formatTime(rfc3339) {
  return `${new Date(rfc3339).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** The UTC date (YYYY-MM-DD) of an RFC 3339 time. */
export function formatDate(rfc3339) {
  return new Date(rfc3339).toISOString().slice(0, 10);
}

/**
 * Where a key's `validUntil` stands at `now`: {state: "never" | "expired" | "expiring" |
 * "valid", days} where `days` is the number of days left, rounded up.
 */
export function expiry(validUntil, now = new Date()) {
  if (validUntil.startsWith(NEVER_EXPIRES)) {
    return { state: 'never', days: Infinity };
  }
  const left = Date.parse(validUntil) - now.getTime();
  const days = Math.ceil(left / DAY_MS);
  if (left <= 0) {
    return { state: 'expired', days: 0 };
  }
  return { state: days <= 7 ? 'expiring' : 'valid', days };
}

/** "1 day", "3 days": a count and its noun, singular or plural (with an s). */
export function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/**
 * The price of a model's SKU of `type` ("input", "cached-input" or "output"): "0.45 EUR" out of
 * "0.45 EUR per 1 million input tokens", the whole description when it has another shape,
 * or null when the model has no such SKU.
 */
export function skuPrice(skus, type) {
  const sku = (skus ?? []).find((line) => line.type === type);
  if (!sku) {
    return null;
  }
  const match = /^(\S+ \S+) per 1 million\b/.exec(sku.description);
  return match ? match[1] : sku.description;
}

/** What was used of a per-minute budget: perMinute − remaining, never below 0. */
export function usedThisMinute(perMinute, remaining) {
  return Math.max(0, perMinute - remaining);
}

/** A one-line summary of an audit event's `changes`, e.g. "name: prod; ttlDuration: 30d". */
export function summarizeChanges(changes) {
  return Object.entries(changes ?? {})
    .map(([field, value]) => `${field}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join('; ');
}

/**
 * A model's lifecycle in words, e.g. "Deprecated — retires 2026-03-01, use model-b",
 * "Retired on 2026-03-01" or, before the deprecation starts, "Deprecated from 2026-01-01 —
 * retires 2026-03-01". Empty for an active model without announcement.
 */
export function lifecycleSummary({ state, announced, retires, successor }) {
  if (!retires) {
    return state === 'active' ? '' : state[0].toUpperCase() + state.slice(1);
  }
  const heads = {
    retired: `Retired on ${formatDate(retires)}`,
    deprecated: `Deprecated — retires ${formatDate(retires)}`,
    active: `Deprecated from ${formatDate(announced)} — retires ${formatDate(retires)}`,
  };
  return successor ? `${heads[state]}, use ${successor}` : heads[state];
}
