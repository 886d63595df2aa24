// Formatting and DOM helpers shared by the dashboard's pages. A value the API does not give
// (absent, null, not a number) is shown as DASH, never as 0.

export const DASH = '–';

/** Whether `v` is a finite number. */
export const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

/**
 * Builds an element: `h('td', {class: 'num'}, '42')`. Attributes starting with `on` are event
 * listeners; children are nodes or text (null and undefined are skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** An SVG element with attributes and children. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A timestamp (ms since the epoch) as local date and time; -1, 0 and absent as DASH. */
export function time(ms) {
  if (!isNum(ms) || ms <= 0) return DASH;
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A duration in ms, with the two largest units: "850 ms", "12.3 s", "4 m 5 s", "2 h 3 m". */
export function duration(ms) {
  if (!isNum(ms) || ms < 0) return DASH;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.floor(s % 60)} s`;
  const hours = Math.floor(m / 60);
  if (hours < 24) return `${hours} h ${m % 60} m`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Bytes with a binary unit: "512 B", "1.5 KiB", "20.1 MiB". */
export function bytes(n) {
  if (!isNum(n) || n < 0) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** A count with thousands separators; fractions to one decimal. */
export function count(n) {
  if (!isNum(n)) return DASH;
  return Number.isInteger(n)
    ? n.toLocaleString('en-US')
    : n.toLocaleString('en-US', { maximumFractionDigits: 1 });
}

/** A rate per second: "1,234.5/s". */
export function rate(n, unit = '') {
  if (!isNum(n)) return DASH;
  return `${count(Math.round(n * 10) / 10)}${unit}/s`;
}

/** A ratio 0..1 as a percentage. */
export function percent(ratio) {
  if (!isNum(ratio)) return DASH;
  return `${(ratio * 100).toFixed(ratio < 0.1 && ratio > 0 ? 1 : 0)} %`;
}

/**
 * Flink's backpressure levels from the ratio of time a task is back-pressured: OK up to 10 %,
 * LOW up to 50 %, HIGH above. `null` when the ratio is not reported.
 */
export function backpressureLevel(ratio) {
  if (!isNum(ratio)) return null;
  if (ratio <= 0.1) return 'OK';
  if (ratio <= 0.5) return 'LOW';
  return 'HIGH';
}

/** A state name as a coloured badge (RUNNING, FINISHED, FAILED, ...). */
export function badge(state) {
  const text = state ?? DASH;
  return h('span', { class: `badge state-${String(text).toLowerCase()}` }, text);
}

/** A backpressure level as a badge, or DASH. */
export function backpressureBadge(ratio) {
  const level = backpressureLevel(ratio);
  if (level === null) return DASH;
  return h('span', { class: `badge bp-${level.toLowerCase()}`, title: percent(ratio) },
    `${level} (${percent(ratio)})`);
}

/** A watermark (ms since the epoch) as time of day with milliseconds; absent or null: DASH. */
export function watermark(ms) {
  if (!isNum(ms) || ms <= 0) return DASH;
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A table with a header row and body rows; `empty` is shown in one cell when there are none. */
export function table(headers, rows, { empty = 'none', cls = '' } = {}) {
  const head = h('thead', {}, h('tr', {}, headers.map((title) => h('th', {}, title))));
  const body = h('tbody', {});
  if (rows.length === 0) {
    body.append(h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, empty)));
  }
  for (const row of rows) body.append(row);
  return h('table', { class: `grid ${cls}` }, head, body);
}

/** A table row from cells (nodes or text); `attrs` go on the row. */
export function row(cells, attrs = {}) {
  return h('tr', attrs, cells.map((cell) => (cell instanceof Node && cell.tagName === 'TD')
    ? cell
    : h('td', {}, cell ?? DASH)));
}

/** A right-aligned numeric cell. */
export const num = (text) => h('td', { class: 'num' }, text ?? DASH);
