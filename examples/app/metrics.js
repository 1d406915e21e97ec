'use strict'
// Prometheus text format (version 0.0.4) from plain stats objects, whatever fields they have:
// a nested object with p50/p99/count is a latency summary in microseconds, any other number
// or boolean a sample. New fields in client.stats() or server.stats() show up without a change
// here.

const QUANTILES = [['p50', '0.5'], ['p90', '0.9'], ['p99', '0.99'], ['p999', '0.999']]

function isSummary (v) {
  return v !== null && typeof v === 'object' && typeof v.count === 'number' && typeof v.p50 === 'number'
}

function snake (name) {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^a-zA-Z0-9_]/g, '_').toLowerCase()
}

/** Appends the Prometheus lines of `stats` (a stats() object) under the metric name `prefix`. */
function render (lines, prefix, stats) {
  for (const [key, value] of Object.entries(stats)) {
    const name = `${prefix}_${snake(key)}`
    if (isSummary(value)) {
      lines.push(`# TYPE ${name}_microseconds summary`)
      for (const [field, q] of QUANTILES) {
        if (typeof value[field] === 'number') lines.push(`${name}_microseconds{quantile="${q}"} ${value[field]}`)
      }
      lines.push(`${name}_microseconds_count ${value.count}`)
    } else if (value !== null && typeof value === 'object') {
      render(lines, name, value)
    } else if (typeof value === 'number' || typeof value === 'boolean') {
      lines.push(`# TYPE ${name} untyped`, `${name} ${Number(value)}`)
    }
  }
  return lines
}

/** `sections`: { metricPrefix: statsObject }. Returns the whole exposition text. */
function toPrometheus (sections) {
  const lines = []
  for (const [prefix, stats] of Object.entries(sections)) {
    if (stats) render(lines, prefix, stats)
  }
  return lines.join('\n') + '\n'
}

module.exports = { toPrometheus }
