// Quick start: fire-and-forget and request/reply from one client.
// Run: node examples/quickstart.js <endpoint>, with a service listening there (`npm run demo`
// starts one, and prints this command with its endpoint).
const { Client } = require('zerowire')

async function main (endpoint) {
  const client = new Client(endpoint, { requestTimeoutMs: 2000 })

  // send() returns at once; the raw string goes as-is (no JSON.stringify on your side).
  for (let i = 0; i < 1000; i++) {
    client.send(`{"type":"log","level":"info","msg":"user ${i} signed in"}`)
  }

  // request() resolves with the reply body, also raw.
  const reply = await client.request('{"type":"time_request"}')
  console.log('time reply:', reply)

  console.log('stats:', client.stats())
  await client.close() // drains what is still queued (at most lingerMs)
}

if (!process.argv[2]) {
  console.error('usage: node examples/quickstart.js <endpoint>   (e.g. ipc:///path/to/service.sock)')
  process.exit(1)
}
main(process.argv[2]).catch((err) => {
  console.error(err)
  process.exit(1)
})
