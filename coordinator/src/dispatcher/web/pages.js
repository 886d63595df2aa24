// The dashboard's pages other than a job's: cluster overview, job list, TaskManager list and
// page, and the SQL submission box. Each `mount*(root, params, ctx)` builds its page in `root`
// and returns `{refresh}` (polled by app.js) or nothing (a page that does not poll).

import { api } from './api.js';
import {
  DASH, badge, bytes, count, duration, fill, h, isNum, num, rate, row, table, time,
} from './format.js';

/** Order in which job states are listed (Flink's: active ones first). */
const JOB_STATES = ['RUNNING', 'CREATED', 'RESTARTING', 'FAILING', 'CANCELLING', 'FINISHED',
  'CANCELED', 'FAILED'];

const jobLink = (jid, text) => h('a', { href: `#/jobs/${encodeURIComponent(jid)}` }, text ?? jid);
const tmLink = (id, text) => h('a', { href: `#/taskmanagers/${encodeURIComponent(id)}` }, text ?? id);

/** A job's task counts by state, the non-zero ones, as small badges. */
function taskCounts(tasks) {
  if (!tasks || typeof tasks !== 'object') return DASH;
  const entries = Object.entries(tasks).filter(([, n]) => isNum(n) && n > 0);
  if (entries.length === 0) return '0';
  return h('span', { class: 'counts' }, entries.map(([state, n]) =>
    h('span', { class: `badge small state-${state.toLowerCase()}`, title: state }, `${n} ${state}`)));
}

function jobRows(jobs) {
  const sorted = [...jobs].sort((a, b) => (b['start-time'] ?? 0) - (a['start-time'] ?? 0));
  return sorted.map((job) => row([
    jobLink(job.jid, job.name || job.jid),
    h('code', {}, job.jid),
    badge(job.state),
    time(job['start-time']),
    num(duration(job.duration)),
    taskCounts(job.tasks),
  ], { 'data-jid': job.jid }));
}

const JOB_HEADERS = ['Name', 'Job id', 'State', 'Start', 'Duration', 'Tasks'];

/** A TaskManager's metric, from its own entry or (for the detail page) its list entry. */
const metric = (tm, key) => tm?.metrics?.[key];

function taskManagerRows(list) {
  return list.map((tm) => row([
    tmLink(tm.id),
    tm.host ?? DASH,
    h('code', {}, tm.path ?? DASH),
    num(`${tm.freeSlots ?? DASH} / ${tm.slotsNumber ?? DASH}`),
    num(duration(tm.timeSinceLastHeartbeat)),
    num(bytes(metric(tm, 'memory-rss-bytes'))),
    num(rate(metric(tm, 'network-bytes-in-per-second') / 1024, ' KiB')),
    num(rate(metric(tm, 'network-bytes-out-per-second') / 1024, ' KiB')),
  ], { 'data-tm': tm.id }));
}

const TM_HEADERS = ['Id', 'Host', 'RPC address', 'Free / slots', 'Last heartbeat', 'Memory (RSS)',
  'Network in', 'Network out'];

function card(title, value, detail) {
  return h('div', { class: 'card' },
    h('div', { class: 'card-title' }, title),
    h('div', { class: 'card-value' }, value),
    detail ? h('div', { class: 'card-detail muted' }, detail) : null);
}

export function mountOverview(root) {
  const cards = h('div', { class: 'cards', id: 'overview-cards' });
  const jobs = h('div', { id: 'overview-jobs' }, h('p', { class: 'muted' }, 'Loading…'));
  const tms = h('div', { id: 'overview-taskmanagers' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(
    h('h1', {}, 'Cluster overview'),
    cards,
    h('h2', {}, 'Jobs'),
    jobs,
    h('h2', {}, 'TaskManagers'),
    tms,
  );
  return {
    async refresh() {
      const [overview, jobList, tmList] = await Promise.all([
        api('/overview'), api('/jobs/overview'), api('/taskmanagers'),
      ]);
      const total = overview['slots-total'];
      const free = overview['slots-available'];
      const byState = {};
      for (const job of jobList.jobs ?? []) byState[job.state] = (byState[job.state] ?? 0) + 1;
      fill(cards,
        card('TaskManagers', count(overview.taskmanagers)),
        card('Slots', `${count(free)} free`,
          `${count(total)} total, ${isNum(total) && isNum(free) ? count(total - free) : DASH} used`),
        card('Running jobs', count(overview['jobs-running'])),
        card('Finished', count(overview['jobs-finished'])),
        card('Canceled', count(overview['jobs-cancelled'])),
        card('Failed', count(overview['jobs-failed'])),
        card('Version', overview['sluice-version'] ?? DASH));
      const states = JOB_STATES.filter((s) => byState[s]).map((s) =>
        h('span', { class: `badge state-${s.toLowerCase()}` }, `${byState[s]} ${s}`));
      fill(jobs,
        states.length ? h('p', { class: 'counts' }, states) : null,
        table(JOB_HEADERS, jobRows(jobList.jobs ?? []), { empty: 'No jobs yet: submit one under Submit SQL.' }));
      fill(tms, table(TM_HEADERS, taskManagerRows(tmList.taskmanagers ?? []),
        { empty: 'No TaskManager has registered.' }));
    },
  };
}

export function mountJobList(root) {
  const list = h('div', { id: 'job-list' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('h1', {}, 'Jobs'), list);
  return {
    async refresh() {
      const jobs = await api('/jobs/overview');
      fill(list, table(JOB_HEADERS, jobRows(jobs.jobs ?? []),
        { empty: 'No jobs yet: submit one under Submit SQL.' }));
    },
  };
}

export function mountTaskManagerList(root) {
  const list = h('div', { id: 'taskmanager-list' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('h1', {}, 'TaskManagers'), list);
  return {
    async refresh() {
      const tms = await api('/taskmanagers');
      fill(list, table(TM_HEADERS, taskManagerRows(tms.taskmanagers ?? []),
        { empty: 'No TaskManager has registered.' }));
    },
  };
}

/** A definition list from [term, value] pairs. */
function details(pairs) {
  return h('dl', { class: 'details' }, pairs.flatMap(([term, value]) =>
    [h('dt', {}, term), h('dd', {}, value ?? DASH)]));
}

/** A byte total with its rate, "12.0 MiB (1.5 KiB/s)"; DASH when neither is reported. */
function withRate(total, perSecond) {
  if (!isNum(total) && !isNum(perSecond)) return DASH;
  return `${bytes(total)} (${rate(perSecond / 1024, ' KiB')})`;
}

export function mountTaskManager(root, [id]) {
  const title = h('h1', {}, 'TaskManager ', h('code', {}, id));
  const info = h('div', { id: 'taskmanager-details' }, h('p', { class: 'muted' }, 'Loading…'));
  const metrics = h('div', { id: 'taskmanager-metrics' });
  const slots = h('div', { id: 'taskmanager-slots' });
  root.append(title, info, h('h2', {}, 'Metrics'), metrics, h('h2', {}, 'Slots'), slots);
  const path = `/taskmanagers/${encodeURIComponent(id)}`;
  return {
    async refresh() {
      const [tm, list] = await Promise.all([api(path), api('/taskmanagers')]);
      // The metrics may be reported on the list's entry only.
      const entry = (list.taskmanagers ?? []).find((t) => t.id === id);
      const m = (key) => metric(tm, key) ?? metric(entry, key);
      fill(info, details([
        ['Id', h('code', {}, tm.id)],
        ['Host', tm.host],
        ['RPC address', h('code', {}, tm.path ?? DASH)],
        ['Data port', tm.dataPort],
        ['Flight port', tm.flightPort ? tm.flightPort : DASH],
        ['Metrics', tm.metricsPort ? h('code', {}, `port ${tm.metricsPort}, GET /metrics`) : DASH],
        ['CPU cores', tm.hardware?.cpuCores ? count(tm.hardware.cpuCores) : DASH],
        ['Physical memory', tm.hardware?.physicalMemory ? bytes(tm.hardware.physicalMemory) : DASH],
        ['Slots', `${count(tm.slotsNumber)} (${count(tm.freeSlots)} free)`],
        ['Connected for', duration(tm.timeSinceConnection)],
        ['Last heartbeat', `${duration(tm.timeSinceLastHeartbeat)} ago (${time(tm.lastHeartbeat)})`],
      ]));
      fill(metrics, details([
        ['Memory (RSS)', bytes(m('memory-rss-bytes'))],
        ['Network in', withRate(m('network-bytes-in'), m('network-bytes-in-per-second'))],
        ['Network out', withRate(m('network-bytes-out'), m('network-bytes-out-per-second'))],
        ['Credit stalls', isNum(m('network-credit-stalls')) ? count(m('network-credit-stalls')) : DASH],
      ]));
      const slotRows = (tm.slots ?? []).map((slot) => row([
        num(slot.index),
        slot.free ? h('span', { class: 'badge state-free' }, 'FREE') : h('span', { class: 'badge state-running' }, 'ALLOCATED'),
        slot.jobid ? jobLink(slot.jobid, slot['job-name'] || slot.jobid) : DASH,
        (slot.tasks ?? []).length === 0 ? DASH : h('ul', { class: 'plain' }, slot.tasks.map((t) =>
          h('li', {}, `${t['vertex-name']} [${t.subtask}] `, badge(t.status))))
      ], { 'data-slot': slot.index }));
      fill(slots, table(['Slot', 'Status', 'Job', 'Subtasks'], slotRows, { empty: 'No slots.' }));
    },
  };
}

/** Flink SQL that runs long enough to look at: shown as the box's placeholder. */
const EXAMPLE = `SET 'execution.checkpointing.interval' = '1s';
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  dateTime TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '100000000',
        'rate' = '10000', 'rate.limited' = 'true');
CREATE TABLE hot (auction BIGINT, bids BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO hot
SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))
GROUP BY auction, window_start, window_end;`;

export function mountSubmit(root, _params, { navigate }) {
  const script = h('textarea', {
    id: 'sql-script', name: 'sql', rows: 18, spellcheck: 'false', placeholder: EXAMPLE,
    'aria-label': 'Flink SQL script',
  });
  const status = h('div', { id: 'submit-status', role: 'status' });
  const button = h('button', { id: 'submit-sql', type: 'submit', class: 'primary' }, 'Submit');
  const form = h('form', { id: 'submit-form' },
    script,
    h('div', { class: 'actions' }, button,
      h('span', { class: 'muted' }, 'SET statements, CREATE TABLE/VIEW and INSERT statements, as `sluice sql -f` runs them.')),
    status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = script.value;
    if (text.trim() === '') {
      fill(status, h('div', { class: 'error-box', id: 'submit-error' }, 'The script is empty.'));
      return;
    }
    button.disabled = true;
    fill(status, h('span', { class: 'muted' }, 'Submitting…'));
    try {
      const answer = await api('/jobs', { method: 'POST', body: text });
      if (!answer?.jobid) throw new Error('the JobManager accepted the job but gave no job id');
      fill(status, 'Submitted job ', h('code', {}, answer.jobid));
      navigate(`#/jobs/${encodeURIComponent(answer.jobid)}`);
    } catch (error) {
      fill(status, h('div', { class: 'error-box', id: 'submit-error' },
        h('strong', {}, 'The job was not submitted. '), error.reason ?? error.message));
    } finally {
      button.disabled = false;
    }
  });
  root.append(h('h1', {}, 'Submit a SQL job'), form);
}

export function mountNotFound(root, [hash]) {
  root.append(h('h1', {}, 'Not found'),
    h('p', {}, `The dashboard has no page ${hash || '/'}. `, h('a', { href: '#/overview' }, 'Go to the overview.')));
}
