// The job graph as SVG: one node per chain of the ExecutionGraph (the plan's nodes), one edge
// per exchange, labelled with its partitioning. Layered layout, left to right: a node's layer is
// the length of the longest path from a source to it, so every edge points rightwards; within
// a layer nodes are ordered by the mean position of their inputs (one barycentre pass), which
// keeps the usual stream-processing graphs (fan-in joins, fan-out unions) free of crossings.

import { DASH, backpressureLevel, count, isNum, percent, rate, svg } from './format.js';

const NODE_W = 250;
const NODE_H = 96;
const GAP_X = 110;
const GAP_Y = 36;
const PAD = 24;
/** Characters of a node's title that fit its width at the title's font size. */
const TITLE_CHARS = 32;

/**
 * Layer and position of every node. `nodes` are the plan's nodes (`id`, `inputs[].id`);
 * inputs naming an unknown node are ignored, and a cycle (never produced by the planner)
 * is cut where it is found.
 */
export function layout(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const layer = new Map();
  const visiting = new Set();
  const layerOf = (id) => {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return 0;
    visiting.add(id);
    const inputs = (byId.get(id)?.inputs ?? []).filter((i) => byId.has(i.id));
    const value = inputs.length === 0 ? 0 : 1 + Math.max(...inputs.map((i) => layerOf(i.id)));
    visiting.delete(id);
    layer.set(id, value);
    return value;
  };
  nodes.forEach((n) => layerOf(n.id));
  const layers = [];
  for (const n of nodes) {
    const l = layer.get(n.id);
    (layers[l] ??= []).push(n.id);
  }
  const rank = new Map();
  layers.forEach((ids, l) => {
    if (l > 0) {
      const centre = (id) => {
        const inputs = (byId.get(id)?.inputs ?? []).filter((i) => rank.has(i.id));
        if (inputs.length === 0) return Number.MAX_SAFE_INTEGER;
        return inputs.reduce((sum, i) => sum + rank.get(i.id), 0) / inputs.length;
      };
      ids.sort((a, b) => centre(a) - centre(b) || a - b);
    }
    ids.forEach((id, index) => rank.set(id, index));
  });
  const tallest = Math.max(1, ...layers.map((ids) => ids?.length ?? 0));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const positions = new Map();
  layers.forEach((ids, l) => {
    const column = ids.length * NODE_H + (ids.length - 1) * GAP_Y;
    const top = (height - column) / 2;
    ids.forEach((id, index) => positions.set(id, {
      x: PAD + l * (NODE_W + GAP_X),
      y: top + index * (NODE_H + GAP_Y),
      layer: l,
    }));
  });
  const width = PAD * 2 + layers.length * NODE_W + Math.max(0, layers.length - 1) * GAP_X;
  return { positions, width, height };
}

const truncate = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

/**
 * The drawn graph of a plan. Built once per plan; `update` changes the nodes' state, metrics,
 * colour and selection in place, so a node being clicked is never replaced under the pointer.
 */
export class JobGraphView {
  constructor(container, plan, onSelect) {
    this.nodes = plan?.plan?.nodes ?? [];
    this.onSelect = onSelect;
    const { positions, width, height } = layout(this.nodes);
    this.element = svg('svg', {
      class: 'job-graph', width, height, viewBox: `0 0 ${width} ${height}`,
      role: 'img', 'aria-label': `job graph with ${this.nodes.length} vertices`,
    });
    const defs = svg('defs', {},
      svg('marker', {
        id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8,
        orient: 'auto-start-reverse',
      }, svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow-head' })));
    const edges = svg('g', { class: 'edges' });
    const labels = svg('g', { class: 'edge-labels' });
    const nodeLayer = svg('g', { class: 'nodes' });
    this.element.append(defs, edges, labels, nodeLayer);

    for (const node of this.nodes) {
      const to = positions.get(node.id);
      (node.inputs ?? []).forEach((input, index) => {
        const from = positions.get(input.id);
        if (!from || !to) return;
        const x1 = from.x + NODE_W;
        const y1 = from.y + NODE_H / 2;
        const x2 = to.x;
        const y2 = to.y + NODE_H / 2 + (index - ((node.inputs.length - 1) / 2)) * 14;
        const dx = Math.max(40, (x2 - x1) / 2);
        edges.append(svg('path', {
          class: `edge ship-${String(input.ship_strategy).toLowerCase()}`,
          d: `M ${x1} ${y1} C ${x1 + dx} ${y1}, ${x2 - dx} ${y2}, ${x2} ${y2}`,
          'marker-end': 'url(#arrow)',
          'data-from': input.id, 'data-to': node.id,
        }));
        const text = input.ship_strategy ?? DASH;
        const keys = Array.isArray(input.keys) && input.keys.length ? ` (${input.keys.join(', ')})` : '';
        const mx = (x1 + x2) / 2;
        const my = (y1 + y2) / 2;
        const w = text.length * 7.5 + 14;
        labels.append(svg('g', { class: 'edge-label', transform: `translate(${mx} ${my})` },
          svg('title', {}, `${text}${keys}, ${input.exchange ?? ''}`),
          svg('rect', { x: -w / 2, y: -10, width: w, height: 20, rx: 4 }),
          svg('text', { x: 0, y: 4, 'text-anchor': 'middle' }, text)));
      });
    }

    this.views = new Map();
    for (const node of this.nodes) {
      const { x, y } = positions.get(node.id);
      const title = node.operator || node.description || `vertex ${node.id}`;
      const line = (dy, cls) => svg('text', { x: 12, y: dy, class: cls });
      const status = line(42, 'node-line');
      const records = line(62, 'node-line');
      const pressure = line(82, 'node-line');
      const group = svg('g', {
        class: 'node bp-none', transform: `translate(${x} ${y})`, 'data-vertex': node.id,
        tabindex: 0, role: 'button', 'aria-label': title,
        onclick: () => this.onSelect(node.id),
        onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') this.onSelect(node.id); },
      },
      svg('title', {}, `${node.description || title}\nparallelism ${node.parallelism}`),
      svg('rect', { class: 'node-box', width: NODE_W, height: NODE_H, rx: 8 }),
      svg('rect', { class: 'node-band', width: 6, height: NODE_H, rx: 3 }),
      svg('text', { x: 12, y: 21, class: 'node-title' }, truncate(title, TITLE_CHARS)),
      status, records, pressure);
      nodeLayer.append(group);
      this.views.set(node.id, { group, status, records, pressure, parallelism: node.parallelism });
    }
    container.replaceChildren(this.element);
  }

  /** Shows each vertex's state and metrics (`vertices`: `/jobs/{id}`'s) and the selection. */
  update(vertices, selected) {
    const byId = new Map((vertices ?? []).map((v) => [v.id, v]));
    for (const [id, view] of this.views) {
      const vertex = byId.get(id);
      const m = vertex?.metrics ?? {};
      const level = backpressureLevel(m['backpressure-ratio']);
      view.group.setAttribute('class',
        `node bp-${level ? level.toLowerCase() : 'none'}${id === selected ? ' selected' : ''}`);
      view.group.dataset.status = vertex?.status ?? '';
      view.status.textContent = `Parallelism ${vertex?.parallelism ?? view.parallelism} · ${vertex?.status ?? DASH}`;
      const inRate = m['read-records-per-second'];
      const outRate = m['write-records-per-second'];
      view.records.textContent = isNum(inRate) || isNum(outRate)
        ? `in ${rate(inRate)} · out ${rate(outRate)}`
        : `in ${count(m['read-records'])} · out ${count(m['write-records'])}`;
      view.pressure.textContent = `Backpressure ${level ?? DASH}` +
        `${level ? ` (${percent(m['backpressure-ratio'])})` : ''} · busy ${percent(m['busy-ratio'])}`;
    }
  }
}
