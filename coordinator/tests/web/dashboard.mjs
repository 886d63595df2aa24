// Drives the JobManager's web dashboard in headless Chromium (Debian's /usr/bin/chromium,
// through playwright-core) as a person would: looks at the overview, submits a SQL job in the
// SQL box (a bad one first, whose error must show), follows the job page, checks the drawn job
// graph against the REST plan, the subtasks' states and the checkpoint history, triggers a
// savepoint, opens a TaskManager's page, opens an unknown job's page (the error must show),
// and cancels the job through its Cancel button and confirm dialog.
//
// Usage: node dashboard.mjs --url http://HOST:PORT --sql SCRIPT.sql --artifacts DIR
// Prints one JSON line on stdout ({"jobid", "plan_nodes", "screenshots"}); any failed check
// ends it with a non-zero status and the reason on stderr.

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    sql: { type: 'string' },
    artifacts: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60000' },
  },
});
for (const required of ['url', 'sql', 'artifacts']) {
  if (!args[required]) {
    console.error(`dashboard.mjs: --${required} is required`);
    process.exit(2);
  }
}
const base = args.url.replace(/\/$/, '');
const timeout = Number(args.timeout);
const sql = readFileSync(args.sql, 'utf8');
mkdirSync(args.artifacts, { recursive: true });

/** Fails the run with `message` unless `condition` holds. */
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function rest(path) {
  const response = await fetch(`${base}${path}`);
  const text = await response.text();
  if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

// Without these switches Chromium tries to reach update, sync and QUIC endpoints, and on a
// machine without a network it waits on those connections.
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync'];
const profile = mkdtempSync(join(tmpdir(), 'sluice-dashboard-chromium-'));
const screenshots = [];
const pageErrors = [];
let context;

async function shoot(page, name, locator) {
  const path = join(args.artifacts, `${name}.png`);
  if (locator) {
    await locator.screenshot({ path });
  } else {
    await page.screenshot({ path, fullPage: true });
  }
  screenshots.push(path);
}

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    args: chromiumArgs,
    viewport: { width: 1440, height: 900 },
    timeout,
  });
  context.setDefaultTimeout(timeout);
  const page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(error.message));

  // The overview: two TaskManagers and their slots.
  await page.goto(`${base}/`);
  const cards = page.locator('#overview-cards');
  await cards.getByText('TaskManagers').waitFor();
  await page.locator('#overview-taskmanagers tr[data-tm]').nth(1).waitFor();
  const overview = await rest('/overview');
  check(overview.taskmanagers === 2, `two TaskManagers registered: ${JSON.stringify(overview)}`);
  check((await cards.locator('.card').first().locator('.card-value').textContent()) === '2',
    'the overview shows 2 TaskManagers');
  await shoot(page, 'overview');

  // A script that does not plan: its error is shown, and the page stays.
  await page.click('nav a[data-nav="submit"]');
  await page.fill('#sql-script', 'INSERT INTO nowhere SELECT 1;');
  await page.click('#submit-sql');
  const submitError = page.locator('#submit-error');
  await submitError.waitFor();
  const errorText = await submitError.textContent();
  check(/nowhere/.test(errorText), `the SQL error names the unknown table: '${errorText}'`);
  check(page.url().endsWith('#/submit'), `a failed submission stays on the form: ${page.url()}`);

  // The real job: submitted from the box, the browser lands on its page.
  await page.fill('#sql-script', sql);
  await page.click('#submit-sql');
  await page.waitForURL(/#\/jobs\/[0-9a-f]{32}$/);
  const jobid = page.url().split('/').pop();

  // The job graph: one SVG node per plan node, one labelled edge per exchange.
  const plan = await rest(`/jobs/${jobid}/plan`);
  const nodes = plan.plan.nodes;
  check(nodes.length >= 2, `the plan has at least two nodes: ${JSON.stringify(plan)}`);
  const graph = page.locator('#job-graph svg.job-graph');
  await graph.waitFor();
  check(await graph.locator('g.node').count() === nodes.length,
    `the graph draws ${nodes.length} nodes`);
  const strategies = nodes.flatMap((n) => (n.inputs ?? []).map((i) => i.ship_strategy)).sort();
  const labels = (await graph.locator('g.edge-label text').allTextContents()).sort();
  check(labels.length > 0 && JSON.stringify(labels) === JSON.stringify(strategies),
    `edge labels ${JSON.stringify(labels)} are the plan's ship strategies ${JSON.stringify(strategies)}`);
  for (const node of nodes) {
    const title = await graph.locator(`g.node[data-vertex="${node.id}"] .node-title`).textContent();
    check(title.length > 0, `node ${node.id} has a title`);
  }

  // Every vertex's subtasks reach RUNNING, seen by selecting its node.
  for (const node of nodes) {
    await graph.locator(`g.node[data-vertex="${node.id}"]`).click();
    await graph.locator(`g.node.selected[data-vertex="${node.id}"]`).waitFor();
    const seen = await page.waitForFunction(([parallelism]) => {
      const state = document.querySelector('#job-name .badge')?.textContent;
      if (state === 'FAILED' || state === 'CANCELED') return `the job is ${state}`;
      const rows = [...document.querySelectorAll('#subtasks tr[data-subtask]')];
      return rows.length === parallelism && rows.every((r) => r.dataset.status === 'RUNNING');
    }, [node.parallelism], { timeout });
    const outcome = await seen.jsonValue();
    if (outcome !== true) {
      const job = await rest(`/jobs/${jobid}`);
      throw new Error(`${outcome} before vertex ${node.id}'s subtasks ran: ${job['failure-cause']}`);
    }
  }

  // Live metrics: every vertex shows its records in as a number (not "–") and a
  // backpressure level, and its graph node its rate.
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#vertices tr[data-vertex]')];
    return rows.length > 0 && rows.every((r) =>
      /^[0-9]/.test(r.cells[3]?.textContent.trim() ?? '')
      && /^(OK|LOW|HIGH)/.test(r.cells[7]?.textContent.trim() ?? ''));
  }, null, { timeout });

  // A completed checkpoint in the history.
  await page.locator('#checkpoints tr[data-status="COMPLETED"]').first().waitFor();
  await shoot(page, 'job');
  await shoot(page, 'checkpoints', page.locator('#checkpoints'));

  // A savepoint, triggered with the button; its location is shown when it completes.
  await page.click('#trigger-savepoint');
  const location = page.locator('#savepoint-location');
  await location.waitFor();
  const savepoint = (await location.textContent()).trim();
  check(savepoint.length > 1, `the savepoint's location is shown: '${savepoint}'`);

  // A TaskManager's page, through the link of a running subtask; its slots name the job.
  await page.locator('#subtasks a[href^="#/taskmanagers/"]').first().click();
  await page.waitForURL(/#\/taskmanagers\/.+$/);
  await page.locator(`#taskmanager-slots a[href="#/jobs/${jobid}"]`).first().waitFor();
  await shoot(page, 'taskmanager');

  // An unknown job: the API's 404 is shown, not a blank page.
  await page.goto(`${base}/#/jobs/00000000000000000000000000000000`);
  const banner = page.locator('#page-error');
  await banner.getByText('no job 00000000000000000000000000000000').waitFor();
  check((await banner.textContent()).includes('404'), 'the error shows the status');
  await shoot(page, 'unknown-job');

  // Cancel, accepting the confirm dialog; the page follows the job to CANCELED.
  await page.goto(`${base}/#/jobs/${jobid}`);
  await graph.waitFor();
  let confirmed = '';
  page.once('dialog', async (dialog) => {
    confirmed = dialog.message();
    await dialog.accept();
  });
  await page.click('#cancel-job');
  await page.locator('#job-name .badge', { hasText: 'CANCELED' }).waitFor();
  check(confirmed.includes(jobid), `the confirm names the job: '${confirmed}'`);
  await shoot(page, 'job-canceled');

  check(pageErrors.length === 0, `the page raised no errors: ${pageErrors.join('; ')}`);
  console.log(JSON.stringify({ jobid, plan_nodes: nodes.length, savepoint, screenshots }));
} catch (error) {
  console.error(error?.stack ?? String(error));
  if (pageErrors.length) console.error(`errors raised in the page: ${pageErrors.join('; ')}`);
  const page = context?.pages()[0];
  if (page) {
    const path = join(args.artifacts, 'failure.png');
    await page.screenshot({ path, fullPage: true }).catch(() => {});
    console.error(`screenshot at the failure: ${path}`);
  }
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
