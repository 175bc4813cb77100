#!/usr/bin/env node
// A js-libp2p 3.x test bot, modelled on the real bot daemon: it sits behind
// NAT (no listening socket of its own), dials its relays (one or several, as
// the daemon's list), reserves a slot on one of them (circuit relay v2; more
// with --reservations) and moves it to another when that relay goes away,
// serves an echo protocol to peers reaching it through a relay, and gossips. It is driven by JSON lines on stdin and reports JSON
// lines on stdout; see README.md for the protocol. Diagnostics go to stderr.
import { createHash, randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { KEEP_ALIVE } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { byteStream } from '@libp2p/utils'
import { webSockets } from '@libp2p/websockets'
import { isMultiaddr, multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const ECHO_PROTOCOL = '/bsv-p2p-test/echo/1.0.0'
const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_LENGTH = 32
const DEFAULT_TIMEOUT_MS = 120_000
const STOP_TIMEOUT_MS = 10_000
const CHUNK = 64 * 1024
const ECHO_READ_BUFFER = 32 * 1024 * 1024
// The topics the real bots publish on (and the Rust relay joins by default).
const DEFAULT_TOPICS = '/openclaw/announce/1.0.0,/openclaw/node-status/1.0.0,/openclaw/services/1.0.0'

// Set once a stop has begun (declared up here: listeners registered before
// the command section read it).
let stopping = false
const inflight = new Set()

// ---------------------------------------------------------------- output

function emit (obj) {
  // stdout to a pipe is synchronous on Linux, so lines never interleave and
  // nothing is lost at process.exit().
  process.stdout.write(JSON.stringify(obj, (_k, v) => typeof v === 'bigint' ? v.toString() : v) + '\n')
}

/** Wall-clock microseconds since the epoch, sub-millisecond: bots on one
 * host compare these to time gossip from one to another. */
function nowUs () {
  return Math.round((performance.timeOrigin + performance.now()) * 1000)
}

function log (...args) {
  console.error('[bot]', ...args)
}

// ---------------------------------------------------------------- arguments

function usage (msg) {
  if (msg != null) console.error(`bot.mjs: ${msg}`)
  console.error('usage: node bot.mjs --relay <multiaddr incl. /p2p/ID>... [--reservations 1] ' +
    '[--transport tcp|ws|any] [--monitor-interval-ms 10000] [--topics t1,t2] [--no-reserve] ' +
    '[--gossip-on-limited] [--key-seed S] [--listen MULTIADDR]... [--dcutr]')
  process.exit(2)
}

let args
try {
  args = parseArgs({
    options: {
      relay: { type: 'string', multiple: true, default: [] },
      reservations: { type: 'string', default: '1' },
      transport: { type: 'string', default: 'any' },
      'monitor-interval-ms': { type: 'string', default: '10000' },
      topics: { type: 'string', default: DEFAULT_TOPICS },
      'no-reserve': { type: 'boolean', default: false },
      'gossip-on-limited': { type: 'boolean', default: false },
      'key-seed': { type: 'string' },
      listen: { type: 'string', multiple: true, default: [] },
      dcutr: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    },
    strict: true
  }).values
} catch (err) {
  usage(err.message)
}
if (args.help) usage()
if (args.relay.length === 0) usage('--relay is required')

/** The peer an address leads to: its last /p2p component (a circuit address
 * names the relay first, then the destination). */
function lastPeerId (ma) {
  return ma.getComponents().findLast(c => c.name === 'p2p')?.value
}
if (!['tcp', 'ws', 'any'].includes(args.transport)) usage('--transport must be tcp, ws or any')
// --relay, once or several times: the relays the bot dials at start (the
// daemon's list of relays), each { text, addr, peer }.
const relays = args.relay.map((text) => {
  let addr
  try {
    addr = multiaddr(text)
  } catch (err) {
    usage(`--relay ${text}: ${err.message}`)
  }
  const peer = lastPeerId(addr)
  if (peer == null) usage(`--relay ${text} must end in /p2p/<relay peer id>`)
  const isWs = addr.getComponents().some(c => c.name === 'ws' || c.name === 'wss')
  if ((args.transport === 'tcp' && isWs) || (args.transport === 'ws' && !isWs)) {
    usage(`--transport ${args.transport} cannot dial --relay ${text}`)
  }
  return { text, addr, peer }
})
// How many relays to hold a reservation on at once: one per /p2p-circuit
// listen address (the circuit transport has no other setting for it).
const reservations = Number(args.reservations)
if (!Number.isInteger(reservations) || reservations < 1) usage('--reservations must be a positive integer')
const monitorIntervalMs = Number(args['monitor-interval-ms'])
if (!Number.isInteger(monitorIntervalMs) || monitorIntervalMs <= 0) usage('--monitor-interval-ms must be a positive integer')
const topics = args.topics.split(',').map(t => t.trim()).filter(t => t !== '')

// ---------------------------------------------------------------- node

// --transport restricts the node to one transport (a ws-only bot is what a
// browser bot looks like); "any" carries both. The circuit transport always
// comes along: it is how the bot reserves and how it reaches other bots.
const transports = []
if (args.transport !== 'ws') transports.push(tcp())
// @libp2p/websockets 10.x dials any /ws or /wss address, plain ws:// on
// loopback included (older majors filtered out insecure non-DNS addresses by
// default and needed `filter: all`), so no extra configuration is needed.
if (args.transport !== 'tcp') transports.push(webSockets())
transports.push(circuitRelayTransport())

// --key-seed: a fixed identity (Ed25519 from sha256 of the seed), so a
// restarted process keeps its peer id; without it, a new identity each run.
const privateKey = args['key-seed'] == null
  ? undefined
  : await generateKeyPairFromSeed('Ed25519', createHash('sha256').update(args['key-seed']).digest())

const node = await createLibp2p({
  privateKey,
  addresses: {
    // Behind NAT: no socket of its own. Listening on /p2p-circuit makes the
    // circuit transport reserve a slot on a relay it is connected to (the
    // relay is found through identify: it advertises the HOP protocol).
    // --listen (the NAT lab) adds sockets of its own, for DCUtR to dial.
    // Each '/p2p-circuit' is one reservation slot (--reservations of them).
    listen: [...args.listen, ...(args['no-reserve'] ? [] : Array(reservations).fill('/p2p-circuit'))]
  },
  transports,
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  // The real daemon runs no ping service; the core connection monitor pings
  // every connection on /ipfs/ping/1.0.0 and aborts it when a ping fails (a
  // peer answering "protocol not supported" still counts as alive).
  connectionMonitor: {
    enabled: true,
    pingInterval: monitorIntervalMs
  },
  services: {
    identify: identify(),
    pubsub: gossipsub({
      emitSelf: false,
      allowPublishToZeroTopicPeers: true,
      fallbackToFloodsub: false,
      // Off by default, as in the library: gossip then flows over the
      // direct relay connection (the relay routes it), not over
      // relayed bot-to-bot circuits, which a Limit makes "limited".
      runOnLimitedConnection: args['gossip-on-limited']
    }),
    // --dcutr: hole punching over relayed connections (needs identify,
    // which the bot always runs, and a --listen socket).
    ...(args.dcutr ? { dcutr: dcutr() } : {})
  }
})

// Every bot echoes whatever arrives on the echo protocol. Relayed
// connections through a relay that sends a Limit are "limited": without
// runOnLimitedConnection the stream would be refused on them.
await node.handle(ECHO_PROTOCOL, serveEcho, {
  runOnLimitedConnection: true,
  maxInboundStreams: 1024,
  maxOutboundStreams: 1024
})

/** Pipes an inbound stream back to itself.
 *
 * Not @libp2p/utils' echo(), which fails on two counts (js-libp2p 3.3):
 * - it pause()s while waiting for 'drain', and pause() throws once the
 *   remote has closed its write end, so a sender that finishes first (every
 *   large echo) gets its stream reset;
 * - while paused, yamux keeps receiving up to its stream window (grown up to
 *   16 MiB) but the read buffer is capped at 4 MiB, past which the stream is
 *   reset.
 * Here we pause only while still readable, raise the read buffer cap above
 * the yamux window, and close our write end on 'end' (remote finished and
 * everything it sent has been delivered to us), never earlier. */
function serveEcho (stream) {
  stream.maxReadBufferLength = ECHO_READ_BUFFER
  return new Promise((resolve) => {
    stream.addEventListener('message', (evt) => {
      try {
        if (!stream.send(evt.data) && stream.readStatus === 'readable') stream.pause()
      } catch (err) {
        stream.abort(err)
      }
    })
    stream.addEventListener('drain', () => {
      if (stream.readStatus === 'paused') stream.resume()
    })
    const finish = () => { stream.close().catch(err => stream.abort(err)) }
    if (stream.readableEnded) finish()
    else stream.addEventListener('end', finish, { once: true })
    stream.addEventListener('close', () => resolve(), { once: true })
  })
}

/** What is left of a relayed connection's Limit, as the circuit transport
 * tracks it (its fields are getters, invisible to JSON.stringify): bytes
 * (decimal string) and seconds remaining, or null for unlimited. */
function limitsInfo (limits) {
  if (limits == null) return null
  return { bytes: limits.bytes?.toString() ?? null, seconds: limits.seconds ?? null }
}

function connInfo (conn) {
  return {
    peer: conn.remotePeer.toString(),
    addr: conn.remoteAddr.toString(),
    id: conn.id,
    direction: conn.direction,
    limited: conn.limits != null,
    limits: limitsInfo(conn.limits),
    status: conn.status
  }
}

node.addEventListener('connection:open', (evt) => {
  const c = connInfo(evt.detail)
  emit({ event: 'connection_open', peer: c.peer, addr: c.addr, limited: c.limited, id: c.id, direction: c.direction, limits: c.limits })
})
node.addEventListener('connection:close', (evt) => {
  const c = evt.detail
  emit({ event: 'connection_close', peer: c.remotePeer.toString(), addr: c.remoteAddr.toString(), id: c.id })
})

// A reservation shows as /p2p-circuit addresses among our own addresses,
// each naming its relay (`<relay addr>/p2p/<relay id>/p2p-circuit`).
function circuitAddrs () {
  return node.getMultiaddrs().map(ma => ma.toString()).filter(s => s.includes('/p2p-circuit'))
}
/** The relay a circuit address of ours goes through. */
function relayOf (addr) {
  return lastPeerId(multiaddr(addr.slice(0, addr.indexOf('/p2p-circuit'))))
}
/** Circuit addresses grouped by relay: Map relay id -> [addr]. */
function byRelay (addrs) {
  const m = new Map()
  for (const a of addrs) {
    const r = relayOf(a) ?? '?'
    m.set(r, [...(m.get(r) ?? []), a])
  }
  return m
}
let reservedAddrs = []
function checkReservation () {
  const now = circuitAddrs()
  const before = byRelay(reservedAddrs)
  const after = byRelay(now)
  const at = Date.now()
  // Per relay first: a reservation lost on one relay, then one taken on
  // another (a failover), in that order when both show at once.
  for (const [relay] of before) {
    if (!after.has(relay) && !stopping) emit({ event: 'relay_reservation_lost', relay, at })
  }
  for (const [relay, addrs] of after) {
    if (!before.has(relay)) emit({ event: 'relay_reserved', relay, addrs, at })
  }
  if (now.length > 0 && now.join() !== reservedAddrs.join()) {
    emit({ event: 'reserved', addrs: now, relays: [...after.keys()], at })
  } else if (now.length === 0 && reservedAddrs.length > 0 && !stopping) {
    emit({ event: 'reservation_lost', relays: [...before.keys()], at })
  }
  reservedAddrs = now
}
// The circuit listener reports 'listening' as soon as the reservation is
// made; self:peer:update comes up to 1 s later (libp2p debounces it) and also
// catches address changes.
node.addEventListener('transport:listening', checkReservation)
node.addEventListener('transport:close', checkReservation)
node.addEventListener('self:peer:update', checkReservation)

node.services.pubsub.addEventListener('message', (evt) => {
  const msg = evt.detail
  if (!topics.includes(msg.topic)) return
  emit({
    event: 'gossip',
    topic: msg.topic,
    from: msg.type === 'signed' ? msg.from.toString() : null,
    data: Buffer.from(msg.data).toString('utf8'),
    atUs: nowUs()
  })
})
for (const t of topics) node.services.pubsub.subscribe(t)

// The connection manager gave up redialling a keep-alive peer (after its
// retries); it dropped the peer's keep-alive tags and dials it no more.
node.addEventListener('peer:reconnect-failure', (evt) => {
  if (!stopping) emit({ event: 'reconnect_failed', peer: evt.detail.toString(), at: Date.now() })
})

await node.start()
emit({ event: 'started', peerId: node.peerId.toString() })

/** Tags `relay` keep-alive and dials it: the connection manager then redials
 * it when the connection drops (as the real daemon keeps its relays), 5
 * retries 1 s apart doubling, and the circuit transport, told by identify
 * that the peer is a relay, reserves there if it has a slot free. */
async function dialRelay (relay, signal) {
  await node.peerStore.merge(peerIdFromString(relay.peer), {
    multiaddrs: [relay.addr.decapsulateCode(421)],
    tags: { [KEEP_ALIVE]: { value: 1 } }
  })
  const conn = await node.dial(relay.addr, { signal })
  emit({ event: 'relay_connected', peer: relay.peer, addr: conn.remoteAddr.toString() })
  return conn
}

// Every relay at once, as the daemon dials its list. A relay that cannot be
// reached is reported and the bot goes on with the others; it exits only
// when it reaches none.
{
  const dials = await Promise.allSettled(relays.map(r => dialRelay(r, AbortSignal.timeout(30_000))))
  const failed = dials.flatMap((d, i) => d.status === 'rejected' ? [[relays[i], d.reason]] : [])
  if (failed.length === relays.length) {
    const why = failed.map(([r, err]) => `cannot dial relay ${r.text}: ${err.message}`).join('; ')
    emit({ event: 'error', error: why })
    await shutdown(1)
  }
  for (const [r, err] of failed) {
    emit({ event: 'relay_unreachable', peer: r.peer, addr: r.text, error: describe(err) })
  }
}

// ---------------------------------------------------------------- helpers

function target (addr) {
  if (typeof addr !== 'string' || addr === '') throw new Error('addr is required')
  return addr.startsWith('/') ? multiaddr(addr) : peerIdFromString(addr)
}

/** The connection to use for `addr`: an open one to that peer if there is
 * one (the real daemon keeps reusing its circuit), else a new dial. With
 * `fresh`, always a new connection.
 *
 * Not simply node.dial(): libp2p's dial reuses only *unlimited*
 * connections, so behind a relay that sends a Limit every dial would open
 * another circuit to the same address, and libp2p then aborts the newer one
 * ("Duplicate multiaddr connection"), resetting any stream already on it. */
async function connect (addr, signal, fresh = false) {
  const t = target(addr)
  if (!fresh) {
    const peer = isMultiaddr(t) ? lastPeerId(t) : t.toString()
    if (peer != null) {
      const open = node.getConnections(peerIdFromString(peer)).filter(c => c.status === 'open')
      const conn = open.find(c => isMultiaddr(t) && c.remoteAddr.equals(t)) ??
        open.find(c => c.limits == null) ?? open[0]
      if (conn != null) return conn
    }
  }
  return node.dial(t, { signal, force: fresh })
}

/** A deterministic pseudo-random byte source (xorshift32), so both ends of a
 * test can know the data without shipping it around. */
function prng (seed) {
  let x = (seed >>> 0) || 0x9e3779b9
  return (n) => {
    const words = new Uint32Array(Math.ceil(n / 4))
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13; x >>>= 0
      x ^= x >>> 17
      x ^= x << 5; x >>>= 0
      words[i] = x
    }
    return new Uint8Array(words.buffer, 0, n)
  }
}

/** Resolves when `stream` emits 'close'; rejects if it closed with an error
 * (reset, abort, timeout). */
function closed (stream) {
  return new Promise((resolve, reject) => {
    if (stream.status === 'closed') { resolve(); return }
    stream.addEventListener('close', (evt) => {
      if (evt.error != null) reject(evt.error)
      else resolve()
    }, { once: true })
  })
}

/** Resolves on the stream's next 'drain'; rejects if it closes first or the
 * signal fires.
 *
 * Not stream.onDrain(): in @libp2p/utils 7.4 it keeps the first drain's
 * promise for good, so every later call resolves at once and a sender
 * waiting on it buffers its whole payload in memory with no backpressure
 * (and never yields to the event loop, so timeouts cannot fire). */
function drained (stream, signal) {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      signal.removeEventListener('abort', onAbort)
    }
    const onDrain = () => { cleanup(); resolve() }
    const onClose = (evt) => {
      cleanup()
      const err = evt.error ?? new Error('stream closed while waiting to send')
      if (evt.error == null) err.name = 'StreamClosedError'
      reject(err)
    }
    const onAbort = () => { cleanup(); reject(signal.reason) }
    if (signal.aborted) { onAbort(); return }
    if (stream.status !== 'open') { onClose({}); return }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    signal.addEventListener('abort', onAbort)
  })
}

/** Sends `bytes` of pseudo-random data on a fresh echo stream over `conn`
 * while reading the echo back; verifies the echo byte for byte (sha256). */
async function echoOnce (conn, bytes, seed, signal) {
  const stream = await conn.newStream(ECHO_PROTOCOL, { runOnLimitedConnection: true, signal })
  const onAbort = () => stream.abort(signal.reason ?? new Error('aborted'))
  signal.addEventListener('abort', onAbort, { once: true })
  let sent = 0
  let received = 0
  try {
    const sentHash = createHash('sha256')
    const recvHash = createHash('sha256')
    stream.addEventListener('message', (evt) => {
      // evt.data is a Uint8Array or a Uint8ArrayList (iterable of Uint8Arrays)
      const parts = evt.data instanceof Uint8Array ? [evt.data] : evt.data
      for (const b of parts) { recvHash.update(b); received += b.byteLength }
    })
    const done = closed(stream)
    done.catch(() => {}) // observed below; avoid an unhandled rejection meanwhile
    const next = prng(seed)
    while (sent < bytes) {
      const chunk = next(Math.min(CHUNK, bytes - sent))
      sentHash.update(chunk)
      sent += chunk.byteLength
      if (!stream.send(chunk)) await drained(stream, signal)
    }
    await stream.close({ signal }) // our write end; the echo side then closes its own
    await done
    const sha256 = sentHash.digest('hex')
    const recvSha = recvHash.digest('hex')
    // A clean close can still hide a cut: a relay enforcing a data limit may
    // end the circuit with a FIN rather than a reset (the js relay does).
    if (received !== sent || recvSha !== sha256) {
      throw new Error(`echo mismatch: sent ${sent} bytes sha256 ${sha256}, received ${received} bytes sha256 ${recvSha}`)
    }
    return { sent, received, sha256 }
  } catch (err) {
    stream.abort(err)
    if (err.message?.startsWith('echo mismatch')) throw err
    const e = new Error(`${err.message || 'stream closed'} (after sending ${sent} and receiving ${received} of ${bytes} bytes)`)
    e.name = err.name
    throw e
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

// ---------------------------------------------------------------- commands

const commands = {
  async echo (cmd, signal) {
    const bytes = cmd.bytes ?? 1024 * 1024
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error('bytes must be a non-negative integer')
    const start = performance.now()
    const conn = await connect(cmd.addr, signal, cmd.fresh === true)
    const r = await echoOnce(conn, bytes, cmd.seed ?? 1, signal)
    return { ...r, ms: Math.round(performance.now() - start), limited: conn.limits != null, connection: conn.id }
  },

  // Like the real daemon: one connection (one circuit) reused for every
  // message, each message on a stream of its own.
  async messages (cmd, signal) {
    const count = cmd.count ?? 20
    const size = cmd.size ?? 1024 * 1024
    const start = performance.now()
    const ids = new Set()
    let ok = 0
    let limited = false
    for (let i = 0; i < count; i++) {
      // the open connection when there is one: a new one only if it dropped
      const conn = await connect(cmd.addr, signal)
      ids.add(conn.id)
      limited ||= conn.limits != null
      await echoOnce(conn, size, (cmd.seed ?? 1) + i, signal)
      ok++
    }
    return {
      count: ok,
      size,
      bytes: ok * size,
      ms: Math.round(performance.now() - start),
      sameConnection: ids.size === 1,
      connections: [...ids],
      limited
    }
  },

  async publish (cmd) {
    if (typeof cmd.topic !== 'string') throw new Error('topic is required')
    const atUs = nowUs()
    const res = await node.services.pubsub.publish(cmd.topic, Buffer.from(String(cmd.data ?? ''), 'utf8'))
    return { recipients: res.recipients.length, recipientPeers: res.recipients.map(p => p.toString()), atUs }
  },

  async peers () {
    return {
      connections: node.getConnections().map(connInfo),
      topicPeers: Object.fromEntries(topics.map(t => [t, node.services.pubsub.getSubscribers(t).map(p => p.toString())]))
    }
  },

  async reservation () {
    const addrs = circuitAddrs()
    return { reserved: addrs.length > 0, addrs, relays: [...byRelay(addrs).keys()] }
  },

  // Dials a peer (a relay, say, that the connection manager gave up on): a
  // relay reached this way is reserved on if a slot is free. With `relay:
  // true`, it is tagged keep-alive as the --relay ones are.
  async dial (cmd, signal) {
    const start = performance.now()
    if (cmd.relay === true) {
      const addr = multiaddr(cmd.addr)
      const peer = lastPeerId(addr)
      if (peer == null) throw new Error('addr must end in /p2p/<peer id>')
      const conn = await dialRelay({ text: cmd.addr, addr, peer }, signal)
      return { peer, addr: conn.remoteAddr.toString(), connection: conn.id, ms: Math.round(performance.now() - start) }
    }
    const conn = await node.dial(target(cmd.addr), { signal })
    return { peer: conn.remotePeer.toString(), addr: conn.remoteAddr.toString(), connection: conn.id, ms: Math.round(performance.now() - start) }
  },

  // The bot runs no ping service, so this speaks /ipfs/ping/1.0.0 itself:
  // 32 random bytes out, the same 32 back.
  async ping (cmd, signal) {
    const conn = await connect(cmd.addr, signal)
    const stream = await conn.newStream(PING_PROTOCOL, { runOnLimitedConnection: true, signal })
    try {
      const bs = byteStream(stream)
      const data = randomBytes(PING_LENGTH)
      const start = performance.now()
      const [, back] = await Promise.all([
        bs.write(data, { signal }),
        bs.read({ bytes: PING_LENGTH, signal })
      ])
      const rtt = performance.now() - start
      if (!Buffer.from(back.subarray()).equals(data)) throw new Error('ping answered with different bytes')
      await stream.close({ signal })
      return { rtt_ms: Math.round(rtt * 1000) / 1000, limited: conn.limits != null }
    } catch (err) {
      stream.abort(err)
      throw err
    }
  }
}

async function run (cmd) {
  const id = cmd.id ?? null
  if (cmd.cmd === 'stop') {
    emit({ event: 'result', id, ok: true })
    await shutdown(0)
    return
  }
  const fn = Object.hasOwn(commands, cmd.cmd) ? commands[cmd.cmd] : null
  if (fn == null) {
    emit({ event: 'result', id, ok: false, error: `unknown cmd ${JSON.stringify(cmd.cmd)}` })
    return
  }
  const timeoutMs = cmd.timeout_ms ?? DEFAULT_TIMEOUT_MS
  const signal = AbortSignal.timeout(timeoutMs)
  // Belt and braces: even a library call that ignores the signal cannot keep
  // the command from answering.
  let timer
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs + 1000)
  })
  try {
    const res = await Promise.race([fn(cmd, signal), timeout])
    emit({ event: 'result', id, ok: true, ...res })
  } catch (err) {
    const desc = describe(err)
    const msg = signal.aborted ? `timed out after ${timeoutMs} ms (${desc})` : desc
    emit({ event: 'result', id, ok: false, error: msg })
  } finally {
    clearTimeout(timer)
  }
}

/** "Name: message", with the causes of an AggregateError (a failed dial
 * lists one per address tried). */
function describe (err) {
  if (!(err instanceof Error)) return String(err)
  let s = `${err.name}: ${err.message}`
  if (Array.isArray(err.errors) && err.errors.length > 0) {
    s += ` [${err.errors.map(describe).join('; ')}]`
  }
  return s
}

async function shutdown (code) {
  if (stopping) return
  stopping = true
  const t = setTimeout(() => {
    log(`node.stop() did not finish within ${STOP_TIMEOUT_MS} ms; exiting anyway`)
    process.exit(code)
  }, STOP_TIMEOUT_MS)
  try {
    await node.stop()
  } catch (err) {
    log('error while stopping:', err)
  }
  clearTimeout(t)
  process.exit(code)
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => {
  if (line.trim() === '' || stopping) return
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (err) {
    emit({ event: 'result', id: null, ok: false, error: `bad JSON: ${err.message}` })
    return
  }
  const p = run(cmd).catch(err => log('command failed:', err))
  inflight.add(p)
  p.finally(() => inflight.delete(p))
})
// EOF: let commands already given finish (each is bounded by its timeout),
// then stop.
rl.on('close', async () => {
  await Promise.allSettled([...inflight])
  await shutdown(0)
})
process.on('SIGINT', () => { shutdown(0) })
process.on('SIGTERM', () => { shutdown(0) })
