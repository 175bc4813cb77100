// Self-test of the js harness: starts relay.mjs and two bots (one over TCP,
// one over WebSocket), then checks reservations, gossip routed by the relay,
// 32 MiB echoes both ways through the circuit and 20 x 1 MiB messages over
// one circuit. Bounded in time; kills only the processes it started.
//
//   node selftest.mjs [--mode unlimited|limited] [--bytes N] [--b-transport ws|tcp] [--verbose]
//
// "limited": the relay sends a Limit (1 GiB / 1 h, the Rust relay's default
// caps), so bots see relayed connections as limited. "default": the js
// relay's own defaults (128 KiB / 2 min per relayed connection): the large
// echoes are expected to fail there.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'

const { values: opts } = parseArgs({
  options: {
    mode: { type: 'string', default: 'unlimited' },
    bytes: { type: 'string', default: String(32 * 1024 * 1024) },
    'b-transport': { type: 'string', default: 'ws' },
    verbose: { type: 'boolean', default: false }
  }
})
const MODE = opts.mode
const ECHO_BYTES = Number(opts.bytes)
const OVERALL_TIMEOUT_MS = 240_000
const here = new URL('.', import.meta.url).pathname
const children = []
let passed = 0
let failed = 0

function check (name, cond, detail = '') {
  if (cond) passed++
  else failed++
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${name}${detail !== '' ? ` - ${detail}` : ''}`)
}

/** A child speaking JSON lines on stdout (and, for bots, on stdin). */
class Proc {
  constructor (name, script, args) {
    this.name = name
    this.events = []
    this.waiters = []
    this.nextId = 1
    this.pending = new Map()
    this.child = spawn(process.execPath, [here + script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    children.push(this.child)
    this.exited = new Promise(resolve => this.child.on('exit', (code, sig) => resolve({ code, sig })))
    createInterface({ input: this.child.stdout }).on('line', line => {
      let ev
      try { ev = JSON.parse(line) } catch { console.log(`FAIL ${name}: non-JSON stdout line ${JSON.stringify(line)}`); failed++; return }
      ev.t = performance.now()
      if (opts.verbose) console.error(`[${name}] ${line.slice(0, 300)}`)
      if (ev.event === 'result' && this.pending.has(ev.id)) {
        this.pending.get(ev.id)(ev)
        this.pending.delete(ev.id)
        return
      }
      this.events.push(ev)
      this.waiters = this.waiters.filter(w => !w(ev))
    })
    createInterface({ input: this.child.stderr }).on('line', line => {
      if (opts.verbose) console.error(`[${name} stderr] ${line}`)
    })
  }

  /** First event (past or future) matching pred, within ms. */
  waitFor (pred, ms, what) {
    const hit = this.events.find(pred)
    if (hit != null) return Promise.resolve(hit)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no ${what} within ${ms} ms`)), ms)
      this.waiters.push(ev => {
        if (!pred(ev)) return false
        clearTimeout(timer); resolve(ev); return true
      })
    })
  }

  cmd (obj) {
    const id = this.nextId++
    return new Promise(resolve => {
      this.pending.set(id, resolve)
      this.child.stdin.write(JSON.stringify({ id, ...obj }) + '\n')
    })
  }
}

async function killAll () {
  for (const c of children) {
    if (c.exitCode == null && c.signalCode == null) c.kill('SIGTERM')
  }
  await new Promise(resolve => setTimeout(resolve, 300))
  for (const c of children) {
    if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
  }
}

const overall = setTimeout(async () => {
  console.log(`FAIL overall timeout ${OVERALL_TIMEOUT_MS} ms`)
  failed++
  await killAll()
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(1)
}, OVERALL_TIMEOUT_MS)

const mb = (bytes, ms) => (bytes / 1048576 / (ms / 1000)).toFixed(1) + ' MiB/s'

try {
  const relayArgs = ['--port', '0', '--ws-port', '0']
  if (MODE === 'unlimited') relayArgs.push('--unlimited')
  else if (MODE === 'limited') relayArgs.push('--data-limit', String(1024 ** 3), '--duration-limit', '3600000')
  else if (MODE !== 'default') throw new Error(`--mode ${MODE}: expected unlimited, limited or default`)
  const relay = new Proc('relay', 'relay.mjs', relayArgs)
  const started = await relay.waitFor(e => e.event === 'started', 20_000, 'started')
  const tcpAddr = started.addrs.find(a => !a.includes('/ws'))
  const wsAddr = started.addrs.find(a => a.includes('/ws'))
  check('relay started with tcp and ws addresses', tcpAddr != null && wsAddr != null, started.addrs.join(' '))

  // Both bots also join a topic the relay does not, to see whether the relay
  // routes gossip for topics it has not joined.
  const topics = '/openclaw/announce/1.0.0,/selftest/private'
  const t0 = performance.now()
  const a = new Proc('A(tcp)', 'bot.mjs', ['--relay', tcpAddr, '--transport', 'tcp', '--topics', topics])
  const bWs = opts['b-transport'] === 'ws'
  const b = new Proc(`B(${bWs ? 'ws' : 'tcp'})`, 'bot.mjs', ['--relay', bWs ? wsAddr : tcpAddr, '--transport', bWs ? 'ws' : 'tcp', '--topics', topics])
  const [aStart, bStart] = await Promise.all([a, b].map(p => p.waitFor(e => e.event === 'started', 20_000, 'started')))

  // Gossip A -> B with only the relay in between, starting the moment both
  // are connected to the relay (before they reserve): publish every 25 ms
  // until B has it, to see how soon the relay's mesh carries it.
  const [aConn, bConn] = await Promise.all([a, b].map(p => p.waitFor(e => e.event === 'relay_connected', 20_000, 'relay connection')))
  const bothConnected = Math.max(aConn.t, bConn.t)
  const gossipStart = performance.now()
  let n = 0
  let got = null
  let firstRecipients
  while (got == null && performance.now() - gossipStart < 15_000) {
    const r = await a.cmd({ cmd: 'publish', topic: '/openclaw/announce/1.0.0', data: `hello ${n++}` })
    if (!r.ok) throw new Error(`publish failed: ${r.error}`)
    if (n === 1) firstRecipients = r.recipients
    got = await b.waitFor(e => e.event === 'gossip' && e.topic === '/openclaw/announce/1.0.0', 25, 'gossip').catch(() => null)
  }
  check('gossip A -> B through the relay', got != null && got.from === aStart.peerId,
    got != null ? `"${got.data}" (publish #${n}) arrived ${Math.round(got.t - bothConnected)} ms after both bots connected to the relay; first publish had ${firstRecipients} recipient(s)` : 'never arrived')

  const [aRes, bRes] = await Promise.all([a, b].map(p => p.waitFor(e => e.event === 'reserved', 20_000, 'reservation')))
  check('A reserved', aRes.addrs.length > 0, `${Math.round(aRes.t - aConn.t)} ms after connecting to the relay (${Math.round(aRes.t - t0)} ms after spawn)`)
  check('B reserved', bRes.addrs.length > 0, `${Math.round(bRes.t - bConn.t)} ms after connecting to the relay (${Math.round(bRes.t - t0)} ms after spawn)`)
  const bRelayConn = await b.waitFor(e => e.event === 'connection_open' && e.peer === started.peerId, 1000, 'relay connection')
  check(`B reached the relay over ${bWs ? 'ws' : 'tcp'}`, bRelayConn.addr.includes('/ws') === bWs, bRelayConn.addr)

  // Informational: a topic the relay has not joined.
  await a.cmd({ cmd: 'publish', topic: '/selftest/private', data: 'private' })
  const priv = await b.waitFor(e => e.event === 'gossip' && e.topic === '/selftest/private', 3000, 'gossip').catch(() => null)
  console.log(`info gossip on a topic the relay has not joined: ${priv != null ? 'delivered' : 'not delivered (relay routes only its own topics)'}`)

  const aCircuit = `${tcpAddr}/p2p-circuit/p2p/${aStart.peerId}`
  const bCircuit = `${bWs ? wsAddr : tcpAddr}/p2p-circuit/p2p/${bStart.peerId}`
  const wantLimited = MODE !== 'unlimited'

  const e1 = await a.cmd({ cmd: 'echo', addr: bCircuit, bytes: ECHO_BYTES })
  check(`echo ${ECHO_BYTES} B A -> B via circuit`, e1.ok && e1.received === ECHO_BYTES && e1.limited === wantLimited,
    e1.ok ? `${e1.ms} ms, ${mb(ECHO_BYTES, e1.ms)} each way, limited=${e1.limited}` : e1.error)
  const e2 = await b.cmd({ cmd: 'echo', addr: aCircuit, bytes: ECHO_BYTES, seed: 7 })
  check(`echo ${ECHO_BYTES} B B -> A via circuit`, e2.ok && e2.received === ECHO_BYTES && e2.limited === wantLimited,
    e2.ok ? `${e2.ms} ms, ${mb(ECHO_BYTES, e2.ms)} each way, limited=${e2.limited}` : e2.error)

  const m = await a.cmd({ cmd: 'messages', addr: bCircuit, count: 20, size: 1048576 })
  check('messages 20 x 1 MiB A -> B on one connection', m.ok && m.count === 20 && m.sameConnection,
    m.ok ? `${m.ms} ms, connections ${m.connections.join(',')}, limited=${m.limited}` : m.error)

  const p = await a.cmd({ cmd: 'ping', addr: tcpAddr })
  check('ping relay', p.ok && p.rtt_ms >= 0, p.ok ? `${p.rtt_ms} ms` : p.error)
  const pb = await a.cmd({ cmd: 'ping', addr: bCircuit, timeout_ms: 5000 })
  check('ping a bot fails cleanly (bots run no ping service)', !pb.ok && /negotiate|not supported/i.test(pb.error), pb.error ?? '')

  const peers = await a.cmd({ cmd: 'peers' })
  const toB = peers.connections?.filter(c => c.peer === bStart.peerId) ?? []
  check('A lists its circuit connection to B', toB.length >= 1 && toB.every(c => c.addr.includes('/p2p-circuit')),
    JSON.stringify(toB.map(c => ({ addr: c.addr, limited: c.limited }))))

  const unknown = await a.cmd({ cmd: 'nope' })
  check('unknown command answered ok:false', unknown.ok === false)

  const stop = await a.cmd({ cmd: 'stop' })
  const aExit = await Promise.race([a.exited, new Promise(resolve => setTimeout(() => resolve({ code: 'timeout' }), 15_000))])
  check('stop command: result then exit 0', stop.ok && aExit.code === 0, JSON.stringify(aExit))

  const lost = await b.waitFor(e => e.event === 'connection_close' && e.peer === aStart.peerId, 10_000, 'close of A').catch(() => null)
  check('B sees A go', lost != null)
  b.child.stdin.end()
  const bExit = await Promise.race([b.exited, new Promise(resolve => setTimeout(() => resolve({ code: 'timeout' }), 15_000))])
  check('stdin EOF: exit 0', bExit.code === 0, JSON.stringify(bExit))
} catch (err) {
  console.log(`FAIL ${err.message}`)
  failed++
} finally {
  clearTimeout(overall)
  await killAll()
}
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
