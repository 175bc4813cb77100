#!/usr/bin/env node
// The js-libp2p 3.x circuit relay v2 server: the anchor the Rust relay is
// benchmarked against. Listens on 127.0.0.1 (TCP, optionally WebSocket), runs
// identify, ping, the hop service and a gossipsub router joined to the bots'
// topics. Prints one JSON line {"event":"started",...} on stdout; diagnostics
// go to stderr. Stops cleanly on SIGINT/SIGTERM (stdin is not read: a
// background job may be handed a closed or shared one).
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { createLibp2p } from 'libp2p'

const DEFAULT_TOPICS = '/openclaw/announce/1.0.0,/openclaw/node-status/1.0.0,/openclaw/services/1.0.0'

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function usage (msg) {
  if (msg != null) console.error(`relay.mjs: ${msg}`)
  console.error('usage: node relay.mjs --port 4101 [--ws-port 4102] [--host 127.0.0.1] [--unlimited] ' +
    '[--max-reservations 10000] [--data-limit BYTES] [--duration-limit MS] [--topics t1,t2] [--key-seed S] [--verbose]')
  process.exit(2)
}

let args
try {
  args = parseArgs({
    options: {
      port: { type: 'string' },
      'ws-port': { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      unlimited: { type: 'boolean', default: false },
      'max-reservations': { type: 'string', default: '10000' },
      'data-limit': { type: 'string' },
      'duration-limit': { type: 'string' },
      topics: { type: 'string', default: DEFAULT_TOPICS },
      verbose: { type: 'boolean', default: false },
      'key-seed': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false }
    },
    strict: true
  }).values
} catch (err) {
  usage(err.message)
}
if (args.help) usage()

function intArg (name, { optional = false } = {}) {
  const v = args[name]
  if (v == null) {
    if (optional) return undefined
    usage(`--${name} is required`)
  }
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) usage(`--${name} must be a non-negative integer`)
  return n
}

const port = intArg('port')
const wsPort = intArg('ws-port', { optional: true })
const maxReservations = intArg('max-reservations')
const dataLimit = intArg('data-limit', { optional: true })
const durationLimit = intArg('duration-limit', { optional: true })
if (args.unlimited && (dataLimit != null || durationLimit != null)) usage('--unlimited cannot be combined with --data-limit/--duration-limit')
const topics = args.topics.split(',').map(t => t.trim()).filter(t => t !== '')
const ipv = args.host.includes(':') ? 'ip6' : 'ip4'

const listen = [`/${ipv}/${args.host}/tcp/${port}`]
if (wsPort != null) listen.push(`/${ipv}/${args.host}/tcp/${wsPort}/ws`)

// Reservation settings. The library's defaults are 15 reservations and, per
// relayed connection, a Limit of 128 KiB and 2 minutes (sent to both ends, so
// js clients mark the connection "limited"). --unlimited sends no Limit at
// all (applyDefaultLimit: false), so relayed connections are not limited.
const reservations = {
  maxReservations,
  applyDefaultLimit: !args.unlimited
}
if (dataLimit != null) reservations.defaultDataLimit = BigInt(dataLimit)
if (durationLimit != null) reservations.defaultDurationLimit = durationLimit

// --key-seed: a fixed identity (Ed25519 from sha256 of the seed), so a
// restarted process keeps its peer id; without it, a new identity each run.
const privateKey = args['key-seed'] == null
  ? undefined
  : await generateKeyPairFromSeed('Ed25519', createHash('sha256').update(args['key-seed']).digest())

const node = await createLibp2p({
  privateKey,
  addresses: { listen },
  transports: [tcp(), webSockets()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  connectionManager: {
    // A relay serves many peers, all from 127.0.0.1 in these tests: lift the
    // defaults (300 connections, 10 pending handshakes, 5 inbound connections
    // per second per host) that would throttle a benchmark.
    maxConnections: 100_000,
    maxIncomingPendingConnections: 10_000,
    inboundConnectionThreshold: 100_000
  },
  services: {
    identify: identify(),
    ping: ping(),
    relay: circuitRelayServer({
      reservations,
      maxInboundHopStreams: 10_000,
      maxOutboundStopStreams: 10_000
    }),
    pubsub: gossipsub({
      emitSelf: false,
      allowPublishToZeroTopicPeers: true,
      fallbackToFloodsub: false
    })
  }
})

// The relay joins the bots' topics so that it routes gossip between bots that
// only meet here (gossipsub forwards only on topics it is subscribed to).
for (const t of topics) node.services.pubsub.subscribe(t)

if (args.verbose) {
  node.addEventListener('connection:open', (evt) => {
    console.error(`[relay] open ${evt.detail.remotePeer} ${evt.detail.remoteAddr}`)
  })
  node.addEventListener('connection:close', (evt) => {
    console.error(`[relay] close ${evt.detail.remotePeer}`)
  })
  node.services.relay.addEventListener('relay:reservation', (evt) => {
    console.error(`[relay] reservation ${evt.detail.addr}`)
  })
}

await node.start()
emit({
  event: 'started',
  peerId: node.peerId.toString(),
  addrs: node.getMultiaddrs().map(ma => ma.toString()),
  unlimited: args.unlimited
})

let stopping = false
async function shutdown () {
  if (stopping) return
  stopping = true
  const t = setTimeout(() => {
    console.error('[relay] node.stop() did not finish within 10 s; exiting anyway')
    process.exit(0)
  }, 10_000)
  try {
    await node.stop()
  } catch (err) {
    console.error('[relay] error while stopping:', err)
  }
  clearTimeout(t)
  process.exit(0)
}
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
