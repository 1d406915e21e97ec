'use strict'
// Renders a benchmark report (results/latest.json) as an SVG chart: fire-and-forget throughput
// per message size (log scale) and request round-trip latency (p50 and p99, 100 B and 1 KiB).
// Plain SVG text, no dependencies. run.js writes it to results/latest.svg; README shows it.
// Usage: node bench/chart.js [report.json] > chart.svg

const fs = require('node:fs')
const path = require('node:path')

const W = 980
const H = 400
const PANEL = { top: 56, bottom: 330 }
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#7f7f7f', '#111111']

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const num = (v) => (v >= 1e6 ? `${+(v / 1e6).toPrecision(3)}M` : v >= 1e3 ? `${+(v / 1e3).toPrecision(3)}k` : `${+v.toPrecision(3)}`)

/** The series drawn: [label, figure id prefix or ids, column]. */
function series (report) {
  const s = report.summary
  const get = (id, col) => (s[id] && typeof s[id][col] === 'number' ? s[id][col] : null)
  const pct = (id, col, i) => (s[id] && Array.isArray(s[id][col]) ? s[id][col][i] : null)
  const sizes = report.config.fireCases.filter((c) => !c.key.endsWith('_Buffer'))
  const defs = [
    ['zerowire → native ROUTER', '', 'zerowire'],
    ['zeromq.js → native ROUTER', '', 'zeromq.js'],
    ['zerowire → zerowire Server', 'pair_', 'zerowire'],
    ['zeromq.js → zeromq.js Router', 'pair_', 'zeromq.js'],
    ['net (Node ↔ Node)', '', 'net'],
    ['UDS floor (native)', '', 'floor'],
  ]
  return {
    sizes,
    lines: defs.map(([label, prefix, col], i) => ({
      label,
      color: COLORS[i],
      rates: sizes.map((c) => get(`${prefix}${c.key}`, col)),
      rtt: ['100B', '1KiB'].map((tag) => [pct(`${prefix}rtt_${tag}`, col, 0), pct(`${prefix}rtt_${tag}`, col, 1)]),
    })),
  }
}

function throughputPanel ({ sizes, lines }, x0, width) {
  const values = lines.flatMap((l) => l.rates).filter((v) => v > 0)
  const lo = Math.floor(Math.log10(Math.min(...values)))
  const hi = Math.ceil(Math.log10(Math.max(...values)))
  const y = (v) => PANEL.bottom - ((Math.log10(v) - lo) / (hi - lo)) * (PANEL.bottom - PANEL.top)
  const x = (i) => x0 + 50 + (i * (width - 70)) / (sizes.length - 1)
  const out = [`<text x="${x0 + width / 2}" y="30" text-anchor="middle" font-weight="bold">Fire-and-forget, messages/s (log scale)</text>`]
  for (let e = lo; e <= hi; e++) {
    out.push(`<line x1="${x0 + 45}" x2="${x0 + width - 10}" y1="${y(10 ** e)}" y2="${y(10 ** e)}" stroke="#ddd"/>`)
    out.push(`<text x="${x0 + 40}" y="${y(10 ** e) + 4}" text-anchor="end">${num(10 ** e)}</text>`)
  }
  sizes.forEach((c, i) => out.push(`<text x="${x(i)}" y="${PANEL.bottom + 18}" text-anchor="middle">${esc(c.label)}</text>`))
  for (const l of lines) {
    const pts = l.rates.map((v, i) => (v > 0 ? [x(i), y(v)] : null)).filter(Boolean)
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${l.color}" stroke-width="2" points="${pts.map((p) => p.map((n) => n.toFixed(1)).join(',')).join(' ')}"/>`)
    for (const [px, py] of pts) out.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="3" fill="${l.color}"/>`)
  }
  return out
}

function latencyPanel ({ lines }, x0, width) {
  const values = lines.flatMap((l) => l.rtt.flat()).filter((v) => v > 0)
  const max = Math.max(...values)
  const step = 10 ** Math.floor(Math.log10(max)) * (max / 10 ** Math.floor(Math.log10(max)) > 5 ? 2 : 1)
  const top = Math.ceil(max / step) * step
  const y = (v) => PANEL.bottom - (v / top) * (PANEL.bottom - PANEL.top)
  const out = [`<text x="${x0 + width / 2}" y="30" text-anchor="middle" font-weight="bold">Request round trip, µs (one at a time; solid p50, light p99)</text>`]
  for (let v = 0; v <= top; v += step) {
    out.push(`<line x1="${x0 + 45}" x2="${x0 + width - 10}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`)
    out.push(`<text x="${x0 + 40}" y="${y(v) + 4}" text-anchor="end">${num(v)}</text>`)
  }
  const groups = ['100 B', '1 KiB']
  const gw = (width - 70) / groups.length
  const bw = (gw - 20) / lines.length
  groups.forEach((g, gi) => {
    const gx = x0 + 55 + gi * gw
    out.push(`<text x="${gx + (gw - 20) / 2}" y="${PANEL.bottom + 18}" text-anchor="middle">${g}</text>`)
    lines.forEach((l, li) => {
      const [p50, p99] = l.rtt[gi]
      const bx = (gx + li * bw).toFixed(1)
      if (p99 > 0) out.push(`<rect x="${bx}" y="${y(p99).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(PANEL.bottom - y(p99)).toFixed(1)}" fill="${l.color}" opacity="0.3"/>`)
      if (p50 > 0) out.push(`<rect x="${bx}" y="${y(p50).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(PANEL.bottom - y(p50)).toFixed(1)}" fill="${l.color}"/>`)
    })
  })
  return out
}

function chart (report) {
  const data = series(report)
  const half = W / 2
  const legend = data.lines.map((l, i) => {
    const lx = 20 + (i % 3) * 320
    const ly = H - 34 + Math.floor(i / 3) * 16
    return `<rect x="${lx}" y="${ly - 9}" width="12" height="10" fill="${l.color}"/><text x="${lx + 18}" y="${ly}">${esc(l.label)}</text>`
  })
  const date = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)/.exec(report.date || '')
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="14" text-anchor="middle" fill="#555">zerowire benchmark, ${esc(date ? `${date[1]} ${date[2]} UTC` : report.date)}: ${esc(report.cpu)} (${report.cpus} cores), Node ${esc(report.node)}, median of ${report.rounds} rounds</text>`,
    ...throughputPanel(data, 0, half),
    ...latencyPanel(data, half, half),
    ...legend,
    '</svg>',
    '',
  ].join('\n')
}

module.exports = { chart }

if (require.main === module) {
  const file = process.argv[2] || path.join(__dirname, 'results', 'latest.json')
  process.stdout.write(chart(JSON.parse(fs.readFileSync(file, 'utf8'))))
}
