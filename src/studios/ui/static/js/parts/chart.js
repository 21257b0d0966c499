// Peak cpu and memory against what the deployment may use, as two small bars (SVG), with
// the numbers in text beside them for everyone who does not read charts.

import { cpu, h, mb, replace, s } from '../dom.js';

function bar(label, peak, limit, fmt) {
  const ratio = peak !== null && peak !== undefined && limit ? Math.min(peak / limit, 1) : 0;
  const percent = limit && peak !== null && peak !== undefined ? Math.round((peak / limit) * 100) : null;
  const words = peak === null || peak === undefined ? `${label}: no measurement yet` : `${label}: peak ${fmt(peak)} of ${fmt(limit)}${percent !== null ? ` (${percent}%)` : ''}`;
  const level = ratio > 0.9 ? 'high' : ratio > 0.7 ? 'mid' : 'low';
  return h('div', { class: 'bar' },
    h('div', { class: 'bar-label' }, h('span', {}, label), h('span', { class: 'muted' }, peak === null || peak === undefined ? 'not measured yet' : `${fmt(peak)} of ${fmt(limit)}${percent !== null ? ` · ${percent}%` : ''}`)),
    s('svg', { viewBox: '0 0 100 8', preserveAspectRatio: 'none', class: 'bar-svg', role: 'img', 'aria-label': words },
      s('rect', { x: 0, y: 0, width: 100, height: 8, rx: 2, class: 'track' }),
      s('rect', { x: 0, y: 0, width: (ratio * 100).toFixed(2), height: 8, rx: 2, class: `fill ${level}` })));
}

export function usageChart() {
  const el = h('div', { class: 'usage', id: 'usage' });
  return {
    el,
    update(dep) {
      replace(el,
        bar('CPU', dep.maxCpuUsage, dep.cpu, cpu),
        bar('Memory', dep.maxMemoryUsage, dep.memory, mb),
        h('p', { class: 'help' }, 'Peaks since the deployment started, against its instance type’s allowance.'));
    },
  };
}
