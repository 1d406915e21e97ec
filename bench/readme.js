'use strict'
// Renders a benchmark report (bench/results/latest.json, written by run.js) as Markdown: the
// full table run.js prints and writes to results/latest.md, and a summary of it for the
// README. Run directly, or called by run.js at the end of a successful run, it replaces the
// text between the markers `<!-- bench:start -->` and `<!-- bench:end -->` in the top-level
// README.md with the summary (markers kept, nothing else touched), so the README always shows
// the last run actually made.
// Usage: node bench/readme.js [report.json]   (default bench/results/latest.json)

const fs = require('node:fs')
const path = require('node:path')

const README = path.join(__dirname, '..', 'README.md')
const LATEST = path.join(__dirname, 'results', 'latest.json')
const START = '<!-- bench:start -->'
const END = '<!-- bench:end -->'

function fmt (v, unit) {
  if (v === undefined || v === null) return '—'
  if (unit === 'msg/s' || unit === 'req/s' || unit === 'messages') return Math.round(v).toLocaleString('en-US')
  return v < 10 ? v.toFixed(2) : v < 1000 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US')
}

/** A cell: one value, several parts joined by " / ", or a rate with its MB/s. */
function fmtCell (v, figure) {
  if (Array.isArray(v)) return v.map((x) => fmt(x, figure.unit)).join(' / ')
  const s = fmt(v, figure.unit)
  if (v === undefined || v === null || !figure.bytesPerMessage) return s
  const mbs = (v * figure.bytesPerMessage) / 1e6
  return `${s} (${mbs < 100 ? mbs.toFixed(1) : Math.round(mbs).toLocaleString('en-US')} MB/s)`
}

function ratio (a, b) {
  return a > 0 && b > 0 ? a / b : undefined
}

function fmtRatio (a, b) {
  if (Array.isArray(a) && Array.isArray(b)) return a.map((x, i) => fmtRatio(x, b[i])).join(' / ')
  const r = ratio(a, b)
  return r === undefined ? '—' : r.toFixed(2)
}

/** "2026-11-21T07:17:01.536Z" → "2026-11-21 07:17 UTC" */
function fmtDate (iso) {
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)/.exec(iso || '')
  return m ? `${m[1]} ${m[2]} UTC` : String(iso)
}

// The README's rows, one per question a reader of it has: what a send() costs the event loop,
// how many messages and round trips go through, what the loop and the CPU pay at full rate.
const SUMMARY = ['send_1KiB_string', 'send_1MiB_Buffer', 'pair_fire_1KiB', 'pair_rtt_100B', 'pair_inflight_100B_rate', 'eld_max', 'load_max_cpu']

/** The table: one row per figure (or those of `only`), a bold row where a new section starts. */
function table (report, only) {
  const lines = [
    '| figure | unit | zerowire | zeromq.js 6 | zerowire / zeromq.js | `net` (Node) | UDS floor (native) |',
    '|---|---|--:|--:|--:|--:|--:|',
  ]
  let section
  for (const f of report.figures) {
    if (only && !only.includes(f.id)) continue
    if (f.section && f.section !== section) {
      section = f.section
      lines.push(`| **${section}** | | | | | | |`)
    }
    const s = report.summary[f.id]
    const better = f.better === 'lower' || f.better === 'higher' ? `${f.better} is better` : f.better
    const unit = f.bytesPerMessage ? `${f.unit} (MB/s), ${better}` : `${f.unit}, ${better}`
    const cell = (col) => (col in s ? fmtCell(s[col], f) : '—')
    lines.push(`| ${f.label} | ${unit} | ${cell('zerowire')} | ${cell('zeromq.js')} | ${fmtRatio(s.zerowire, s['zeromq.js'])} | ${cell('net')} | ${cell('floor')} |`)
  }
  return lines.join('\n')
}

/** "median (min–max)" over the rounds. */
function fmtSpread (c, unit) {
  if (!c) return '—'
  return `${fmt(c.median, unit)} (${fmt(c.min, unit)}–${fmt(c.max, unit)})`
}

/** The headline figures: each peer's median with its run-to-run spread, and the ratios. */
function headlineTable (report) {
  if (!report.headline) return []
  const lines = [
    '| figure (Node → Node) | zerowire | zeromq.js 6 | `net` | zerowire / zeromq.js | zerowire / `net` |',
    '|---|--:|--:|--:|--:|--:|',
  ]
  for (const h of report.headline) {
    const unit = /msg\/s|requests\/s/.test(h.label) ? 'msg/s' : 'µs'
    const r = (x) => (typeof x === 'number' ? x.toFixed(2) : '—')
    lines.push(`| ${h.label} | ${fmtSpread(h.cols.zerowire, unit)} | ${fmtSpread(h.cols['zeromq.js'], unit)} | ${fmtSpread(h.cols.net, unit)} | ${r(h.toZeromqJs)} | ${r(h.toNet)} |`)
  }
  return [
    `Headline: medians of ${report.rounds} interleaved rounds (lowest–highest round in brackets); ratios are taken within each round, then their median.`,
    '',
    ...lines,
    '',
  ]
}

/** CURVE's cost as per-round ratios: median (min–max over rounds). */
function curveTable (rows) {
  const cell = (s) => (s && s.median !== null ? `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})` : '—')
  return [
    'CURVE over tcp://127.0.0.1, per-round ratios, median (min–max over rounds); for msg/s below 1 is slower, for µs above 1 is slower:',
    '',
    '| figure | zerowire CURVE / plaintext | zeromq.js CURVE / plaintext | zerowire / zeromq.js, CURVE | zerowire / zeromq.js, plaintext |',
    '|---|--:|--:|--:|--:|',
    ...rows.map((r) => `| ${r.label} | ${cell(r.zerowireCurveToPlain)} | ${cell(r.zeromqJsCurveToPlain)} | ${cell(r.zerowireToZeromqJsCurve)} | ${cell(r.zerowireToZeromqJsPlain)} |`),
  ].join('\n')
}

/**
 * The whole Markdown report. `readme: true` gives the summary for README.md, whose first line
 * reads as a sentence under the README's own "Performance" heading instead of a heading, with
 * the chart and the summary's rows; the rest is in results/latest.md.
 */
function render (report, { readme = false } = {}) {
  const first = readme
    ? `Last run: ${fmtDate(report.date)} (\`npm run bench\`; written by \`bench/readme.js\` from \`bench/results/latest.json\`).`
    : `## zerowire benchmark — ${fmtDate(report.date)}`
  const met = report.targets.filter((t) => t.met).length
  const others = report.otherProcessesCoresMedian
  const lines = [
    first,
    '',
    `${report.cpu} (${report.cpus} cores), Node ${report.node}, ${report.platform}; median of ${report.rounds} interleaved ${report.rounds === 1 ? 'round' : 'rounds'}, ${report.durationSeconds} s.`,
    ...(typeof others === 'number' ? [`Other processes kept ${others.toFixed(2)} of ${report.cpus} cores busy (median over runs; steal ${(report.stealCoresMedian ?? 0).toFixed(2)}).`] : []),
    `send() figures: ${report.sendTimerKind === 'wall' ? 'wall time (no per-thread CPU clock here)' : 'main-thread CPU time'} per call, including the hand-over of the tick's batch for zerowire; for zeromq.js, of a loop of awaited sends. Strings are sent by every client; "Buffer" rows send Buffers. Cells with " / " give the parts named in the row (p50 / p99 / p99.9, or p50 / p99 / max); the ratio column divides part by part.`,
    '',
    ...(readme ? ['![Fire-and-forget throughput and round-trip latency per size](bench/results/latest.svg)', ''] : []),
    ...headlineTable(report),
    table(report, readme ? SUMMARY : undefined),
    '',
    ...(!readme && report.curveRatios ? [curveTable(report.curveRatios), ''] : []),
    ...(report.notes || []).flatMap((n) => [n, '']),
    readme
      ? `Targets met in this run: ${met} of ${report.targets.length}. Every figure of the run (${report.figures.length}), with each target: [bench/results/latest.md](bench/results/latest.md).`
      : 'Targets (same run): ' + report.targets.map((t) => `${t.target}: ${t.met ? '**met**' : '**NOT met**'}`).join('; ') + '.',
    '',
  ]
  return lines.join('\n')
}

/** Replaces the README text between the markers with the README variant of `report`. */
function updateReadme (report, readmePath = README) {
  const text = fs.readFileSync(readmePath, 'utf8')
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  if (start < 0 || end < 0 || end < start || text.indexOf(START, start + 1) >= 0 || text.indexOf(END, end + 1) >= 0) {
    throw new Error(`${readmePath}: expected one ${START} followed by one ${END}`)
  }
  const next = text.slice(0, start + START.length) + '\n' + render(report, { readme: true }).trimEnd() + '\n' + text.slice(end)
  if (next === text) return false
  // Write-then-rename (keeping the file's mode) so an interrupted write never leaves half a README.
  const tmp = `${readmePath}.bench.tmp`
  fs.writeFileSync(tmp, next, { mode: fs.statSync(readmePath).mode })
  fs.renameSync(tmp, readmePath)
  return true
}

module.exports = { render, updateReadme, fmtDate }

if (require.main === module) {
  const file = process.argv[2] || LATEST
  const report = JSON.parse(fs.readFileSync(file, 'utf8'))
  const changed = updateReadme(report)
  console.log(`${path.relative(process.cwd(), README)}: ${changed ? 'updated from' : 'already shows'} ${path.relative(process.cwd(), file)} (${fmtDate(report.date)})`)
}
