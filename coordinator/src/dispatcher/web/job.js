// A job's page: header with Cancel and Trigger savepoint, the job graph, the vertices with
// their live metrics, the subtasks of the selected vertex, checkpoints and exceptions.
// Polled: `/jobs/{id}` and `/jobs/{id}/checkpoints` every second; the plan once (it does not
// change while the job lives).

import { api } from './api.js';
import {
  DASH, backpressureBadge, badge, bytes, count, duration, fill, h, isNum, num, percent, rate,
  row, table, time, watermark,
} from './format.js';
import { JobGraphView } from './graph.js';

const TERMINAL = new Set(['FINISHED', 'FAILED', 'CANCELED']);

/** A record count with its rate below it. */
function countAndRate(total, perSecond) {
  return h('td', { class: 'num' }, count(total),
    isNum(perSecond) ? h('div', { class: 'muted small' }, rate(perSecond)) : null);
}

function section(id, title, ...children) {
  return h('section', { id, class: 'panel' }, h('h2', {}, title), ...children);
}

export function mountJob(root, [jid]) {
  const base = `/jobs/${encodeURIComponent(jid)}`;
  let disposed = false;
  let job = null;
  let selected = null;
  let graphView = null;
  let planLoaded = false;

  const title = h('h1', { id: 'job-name' }, 'Job ', h('code', {}, jid));
  const meta = h('div', { id: 'job-meta', class: 'meta' }, h('span', { class: 'muted' }, 'Loading…'));
  const cancelButton = h('button', { id: 'cancel-job', class: 'danger', type: 'button' }, 'Cancel');
  const savepointButton = h('button', { id: 'trigger-savepoint', type: 'button' }, 'Trigger savepoint');
  const actionStatus = h('div', { id: 'action-status', role: 'status' });
  const graph = h('div', { id: 'job-graph', class: 'graph-box' }, h('p', { class: 'muted' }, 'Loading the plan…'));
  const vertices = h('div', { id: 'vertices' });
  const subtasksTitle = h('h2', {}, 'Subtasks');
  const subtasks = h('div', { id: 'subtasks' });
  const checkpoints = h('div', { id: 'checkpoint-stats' }, h('p', { class: 'muted' }, 'Loading…'));
  const exceptions = h('div', { id: 'exceptions-list' });

  root.append(
    h('div', { class: 'job-header' },
      h('div', {}, title, meta),
      h('div', { class: 'actions' }, savepointButton, cancelButton)),
    actionStatus,
    section('graph', 'Job graph', graph),
    section('vertex-table', 'Vertices', vertices),
    h('section', { id: 'subtask-table', class: 'panel' }, subtasksTitle, subtasks),
    section('checkpoints', 'Checkpoints', checkpoints),
    section('exceptions', 'Exceptions', exceptions),
  );

  const select = (id) => {
    selected = id;
    if (job) render();
  };

  cancelButton.addEventListener('click', async () => {
    const name = job?.name ? `'${job.name}' ` : '';
    if (!window.confirm(`Cancel job ${name}(${jid})?`)) return;
    cancelButton.disabled = true;
    fill(actionStatus, h('span', { class: 'muted' }, 'Cancelling…'));
    try {
      await api(`${base}?mode=cancel`, { method: 'PATCH' });
      fill(actionStatus, h('div', { class: 'info-box', id: 'cancel-status' }, 'Cancellation requested.'));
    } catch (error) {
      cancelButton.disabled = false;
      fill(actionStatus, h('div', { class: 'error-box', id: 'cancel-status' }, error.message));
    }
  });

  savepointButton.addEventListener('click', async () => {
    savepointButton.disabled = true;
    const status = h('div', { class: 'info-box', id: 'savepoint-status' }, 'Triggering a savepoint…');
    fill(actionStatus, status);
    try {
      const answer = await api(`${base}/savepoints`, { method: 'POST', body: {} });
      const trigger = answer?.['request-id'];
      if (!trigger) throw new Error('the JobManager gave no request id');
      fill(status, 'Savepoint ', h('code', {}, trigger), ' in progress…');
      while (!disposed) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const result = await api(`${base}/savepoints/${encodeURIComponent(trigger)}`);
        if (result?.status?.id !== 'COMPLETED') continue;
        const failure = result.operation?.['failure-cause'];
        if (failure) {
          status.className = 'error-box';
          fill(status, 'Savepoint failed: ', failure.message ?? failure['stack-trace'] ?? 'no reason given');
        } else {
          fill(status, 'Savepoint completed at ', h('code', { id: 'savepoint-location' }, result.operation?.location ?? DASH));
        }
        break;
      }
    } catch (error) {
      status.className = 'error-box';
      fill(status, error.message);
    } finally {
      savepointButton.disabled = job ? TERMINAL.has(job.state) : false;
    }
  });

  function render() {
    const terminal = TERMINAL.has(job.state);
    fill(title, job.name || 'Job', ' ', badge(job.state));
    fill(meta,
      h('span', {}, 'Job id ', h('code', { id: 'job-id' }, job.jid)),
      h('span', {}, `Started ${time(job['start-time'])}`),
      h('span', {}, `Duration ${duration(job.duration)}`),
      job['end-time'] > 0 ? h('span', {}, `Ended ${time(job['end-time'])}`) : null,
      h('span', {}, `Attempt ${job.attempt ?? 0}`));
    if (terminal) {
      cancelButton.disabled = true;
      savepointButton.disabled = true;
    }

    const list = job.vertices ?? [];
    if (selected === null || !list.some((v) => v.id === selected)) selected = list[0]?.id ?? null;
    graphView?.update(list, selected);

    fill(vertices, table(
      ['Vertex', 'Parallelism', 'Status', 'Records in', 'Records out', 'Bytes in', 'Bytes out',
        'Backpressure', 'Busy', 'Watermark', 'Watermark lag', 'State', 'Late dropped'],
      list.map((v) => {
        const m = v.metrics ?? {};
        return row([
          h('a', { href: '#', onclick: (e) => { e.preventDefault(); select(v.id); } }, v.name),
          num(v.parallelism),
          badge(v.status),
          countAndRate(m['read-records'], m['read-records-per-second']),
          countAndRate(m['write-records'], m['write-records-per-second']),
          num(bytes(m['read-bytes'])),
          num(bytes(m['write-bytes'])),
          backpressureBadge(m['backpressure-ratio']),
          num(percent(m['busy-ratio'])),
          watermark(m.watermark),
          num(duration(m['watermark-lag-ms'])),
          num(bytes(m['state-bytes'])),
          num(count(m['late-records-dropped'])),
        ], { 'data-vertex': v.id, class: v.id === selected ? 'selected' : '' });
      }),
      { empty: 'The job has no vertices.', cls: 'wide' }));

    const vertex = list.find((v) => v.id === selected);
    fill(subtasksTitle, 'Subtasks', vertex ? ` of ${vertex.name}` : '');
    const now = job.now ?? Date.now();
    fill(subtasks, table(
      ['Subtask', 'Status', 'Host', 'TaskManager', 'Attempt', 'Start', 'Duration', 'Failure'],
      (vertex?.subtasks ?? []).map((s) => {
        const start = s['start-time'];
        const end = s['end-time'];
        const took = isNum(start) && start > 0 ? (isNum(end) && end > 0 ? end : now) - start : null;
        const tm = s['taskmanager-id'];
        return row([
          num(s.subtask),
          badge(s.status),
          s.host || DASH,
          tm ? h('a', { href: `#/taskmanagers/${encodeURIComponent(tm)}` }, h('code', {}, tm)) : DASH,
          num(s.attempt),
          time(start),
          num(duration(took)),
          s['failure-cause'] ? h('span', { class: 'failure' }, s['failure-cause']) : DASH,
        ], { 'data-subtask': s.subtask, 'data-status': s.status });
      }),
      { empty: vertex ? 'No subtasks.' : 'Select a vertex in the graph.' }));

    renderExceptions();
  }

  function renderExceptions() {
    const restarts = [...(job.restarts ?? [])].sort((a, b) => (b.timestamp ?? 0) - (a.timestamp ?? 0));
    const rows = [];
    if (job['failure-cause']) {
      rows.push(row([time(job['end-time'] > 0 ? job['end-time'] : null), 'job failed',
        h('pre', { class: 'failure' }, job['failure-cause'])]));
    }
    for (const r of restarts) {
      rows.push(row([time(r.timestamp), 'restarted', h('pre', { class: 'failure' }, r.failure ?? DASH)]));
    }
    fill(exceptions, table(['Time', 'Effect', 'Failure'], rows, { empty: 'No exceptions.' }));
  }

  function renderCheckpoints(stats) {
    const counts = stats.counts ?? {};
    const latest = stats.latest ?? {};
    const history = [...(stats.history ?? [])].sort((a, b) => (b.id ?? 0) - (a.id ?? 0));
    const restoredJob = job?.['restored-checkpoint'];
    const restored = latest.restored;
    const restoreText = [];
    if (restoredJob) {
      restoreText.push(h('div', {}, 'The current attempt resumed from checkpoint ',
        h('strong', {}, String(restoredJob.id)), ' at ', h('code', {}, restoredJob.external_path ?? DASH)));
    }
    if (restored && (!restoredJob || restored.id !== restoredJob.id)) {
      restoreText.push(h('div', {}, `Latest restore: ${restored.is_savepoint ? 'savepoint' : 'checkpoint'} `,
        h('strong', {}, String(restored.id ?? DASH)),
        restored.restore_timestamp ? ` at ${time(restored.restore_timestamp)}` : '',
        restored.external_path ? h('span', {}, ' from ', h('code', {}, restored.external_path)) : ''));
    }
    const completed = latest.completed;
    fill(checkpoints,
      h('div', { class: 'cards' },
        h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Completed'),
          h('div', { class: 'card-value', id: 'checkpoints-completed' }, count(counts.completed))),
        h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Failed'),
          h('div', { class: 'card-value' }, count(counts.failed))),
        h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'In progress'),
          h('div', { class: 'card-value' }, count(counts.in_progress))),
        h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Latest completed'),
          h('div', { class: 'card-value' }, completed ? `#${completed.id}` : DASH),
          completed ? h('div', { class: 'card-detail muted' },
            `${time(completed.latest_ack_timestamp)}, ${bytes(completed.state_size)}, ${duration(completed.end_to_end_duration)}`) : null)),
      h('h3', {}, 'Latest restore'),
      h('div', { id: 'latest-restore' }, restoreText.length ? restoreText : h('span', { class: 'muted' }, 'The job has not restored from a checkpoint.')),
      h('h3', {}, 'History'),
      table(['Id', 'Type', 'Status', 'Acknowledged', 'Trigger time', 'Duration', 'Size', 'Alignment', 'Path / failure'],
        history.slice(0, 50).map((c) => row([
          num(c.id),
          c.checkpoint_type ?? (c.is_savepoint ? 'SAVEPOINT' : 'CHECKPOINT'),
          badge(c.status),
          num(isNum(c.num_subtasks) ? `${count(c.num_acknowledged_subtasks)} / ${count(c.num_subtasks)}` : DASH),
          time(c.trigger_timestamp),
          num(duration(c.end_to_end_duration)),
          num(bytes(c.state_size)),
          num(duration(c.alignment_duration)),
          c.failure_message ? h('span', { class: 'failure' }, c.failure_message)
            : (c.external_path ? h('code', {}, c.external_path) : DASH),
        ], { 'data-checkpoint': c.id, 'data-status': c.status })),
        { empty: counts.total === 0 && !completed ? 'No checkpoints: the job runs without checkpointing, or none was triggered yet.' : 'No checkpoints yet.' }));
  }

  return {
    async refresh() {
      let jobAnswer;
      let stats;
      try {
        [jobAnswer, stats] = await Promise.all([api(base), api(`${base}/checkpoints`)]);
      } catch (error) {
        if (error.status === 404 && job === null) {
          // No such job (a wrong link, or a JobManager that restarted without it): say so in
          // place of the page's content; the banner shows the API's answer.
          fill(meta, h('span', { class: 'failure' }, 'The JobManager knows no job with this id.'));
          cancelButton.disabled = true;
          savepointButton.disabled = true;
          for (const el of [graph, vertices, subtasks, checkpoints, exceptions]) fill(el, DASH);
        }
        throw error;
      }
      if (disposed) return;
      job = jobAnswer;
      if (!planLoaded) {
        const plan = await api(`${base}/plan`);
        if (disposed) return;
        graphView = new JobGraphView(graph, plan, select);
        planLoaded = true;
      }
      render();
      renderCheckpoints(stats);
    },
    dispose() {
      disposed = true;
    },
  };
}
