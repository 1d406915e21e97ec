'use strict'
// A zerowire Server whose route "log" goes to a SQLite file (toSqlite). Closes (and so
// writes out what it read) when its stdin ends; a SIGKILL loses whatever was not committed.
// Usage: node sink_server.js <endpoint> <db>
const { Server } = require('../..')

const [endpoint, db] = process.argv.slice(2)
const server = new Server(endpoint)
server.route('log').toSqlite(db)
process.stdout.write('ready\n')
process.stdin.on('end', () => server.close().then(() => process.exit(0)))
process.stdin.resume()
