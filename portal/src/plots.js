// Plots: what an image shares with others (SVG built as elements, so names stay text) and downloads per revision (uPlot, canvas).
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from './ui.js';

/** Horizontal bars: this image's unique items, then each other image's shared count, out of `total`. */
export function SharedBars({ title, part }) {
  const rows = [{ name: 'unique to this image', count: part.unique, unique: true }, ...part.shared.map((s) => ({ name: s.name, count: s.count }))];
  const max = Math.max(1, part.total);
  const rowH = 22;
  const labelW = 190;
  const barW = 300;
  const height = rows.length * rowH + 8;
  const clip = (s) => (s.length > 28 ? `${s.slice(0, 27)}…` : s);
  return html`
    <figure class="plot">
      <figcaption>${title}: ${part.total} in this image</figcaption>
      <svg role="img" aria-label=${`${title}: ${part.unique} of ${part.total} unique`} viewBox=${`0 0 ${labelW + barW + 60} ${height}`} width="100%" preserveAspectRatio="xMinYMin meet">
        ${rows.map((r, i) => html`
          <g key=${i} transform=${`translate(0 ${i * rowH + 4})`}>
            <title>${r.name}: ${r.count}</title>
            <text x=${labelW - 6} y="14" text-anchor="end" class="lbl">${clip(r.name)}</text>
            <rect x=${labelW} y="2" height="15" width=${Math.max(1, (r.count / max) * barW)} class=${r.unique ? 'bar unique' : 'bar'} />
            <text x=${labelW + (r.count / max) * barW + 6} y="14" class="num">${r.count}</text>
          </g>`)}
      </svg>
    </figure>`;
}

/** Downloads per revision, oldest first, as uPlot bars. */
export function DownloadsPlot({ revisions }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    const revs = [...revisions].reverse();
    const xs = revs.map((_, i) => i);
    const width = Math.max(260, Math.min(640, el.clientWidth || 600));
    const plot = new uPlot({
      width,
      height: 200,
      legend: { show: false },
      scales: { x: { time: false, range: [-0.5, Math.max(0.5, revs.length - 0.5)] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
      axes: [
        { values: (u, vals) => vals.map((v) => (Number.isInteger(v) && revs[v] ? revs[v].tag : '')) },
        { values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? String(v) : '')) },
      ],
      series: [{}, { label: 'downloads', fill: 'rgba(37, 99, 235, 0.6)', stroke: '#1d4ed8', paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } }],
    }, [xs, revs.map((r) => r.downloads || 0)], el);
    return () => plot.destroy();
  }, [revisions.map((r) => `${r.tag}:${r.downloads}`).join(',')]);
  return html`<figure class="plot"><figcaption>Downloads per revision</figcaption><div ref=${ref} class="uplot-host" role="img" aria-label=${`Downloads per revision: ${revisions.map((r) => `${r.tag} ${r.downloads}`).join(', ')}`}></div></figure>`;
}
