// A live SQLite writer like the bots' wallet (better-sqlite3, WAL), for the
// backup sidecar's tests: commits numbered transactions as fast as it can
// (or every --interval-ms), each inserting --rows-per-tx rows into `writes`
// and moving `progress` on in the same transaction, so that any consistent
// copy of the database holds exactly transactions 1..K. Measures the wall
// time of every commit (the stall a writer sees, busy waits included).
//
// node writer.mjs --db PATH [--journal wal|delete] [--rows-per-tx 10]
//   [--payload-bytes 200] [--interval-ms 0] [--fill-mb MB]
//   [--busy-timeout-ms 10000] [--synchronous full|normal|off]
//
// stdout, one JSON object a line:
//   {"started":true,"journalMode":"wal","synchronous":2,"sqlite":"3.x","startTx":0,...}
//   {"fill":true,"fillMb":20,"fillRows":320,"fillMs":180,"dbBytes":20987904}  (with --fill-mb)
//   {"committed":T,"rows":R,"maxStallMs":X,"p99StallMs":Y,"txPerSec":Z,...}    after the first
//        commit, then every 250 ms (T = last committed tx, R = rows in `writes`,
//        atMs = the wall clock when the line was written, ms since the epoch)
//   {...same...,"done":true}   on SIGTERM/SIGINT, after the current transaction
//   {"error":"...","code":"SQLITE_BUSY"}   then exit 1
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const Database = require("better-sqlite3");

function fail(error) {
  const line = { error: String(error?.message ?? error) };
  if (error?.code) line.code = error.code;
  process.stdout.write(JSON.stringify(line) + "\n");
  process.exit(1);
}

function parseArgs(argv) {
  const opts = {
    db: null,
    journal: "wal",
    rowsPerTx: 10,
    payloadBytes: 200,
    intervalMs: 0,
    fillMb: 0,
    busyTimeoutMs: 10000,
    synchronous: null,
  };
  const numeric = {
    "--rows-per-tx": "rowsPerTx",
    "--payload-bytes": "payloadBytes",
    "--interval-ms": "intervalMs",
    "--fill-mb": "fillMb",
    "--busy-timeout-ms": "busyTimeoutMs",
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) fail(`${flag} needs a value`);
    i++;
    if (flag === "--db") opts.db = value;
    else if (flag === "--journal") {
      if (value !== "wal" && value !== "delete") fail(`--journal must be wal or delete, not ${value}`);
      opts.journal = value;
    } else if (flag === "--synchronous") {
      if (!["full", "normal", "off"].includes(value)) fail(`--synchronous must be full, normal or off`);
      opts.synchronous = value;
    } else if (numeric[flag]) {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) fail(`${flag} needs a number >= 0, not ${value}`);
      opts[numeric[flag]] = n;
    } else fail(`unknown argument ${flag}`);
  }
  if (!opts.db) fail("--db PATH is required");
  if (opts.rowsPerTx < 1 || !Number.isInteger(opts.rowsPerTx)) fail("--rows-per-tx must be an integer >= 1");
  return opts;
}

// Commit wall times: exact below 1 ms (1 µs buckets), then 1 % wide
// buckets; quantiles are the upper bound of their bucket.
class Histogram {
  constructor() {
    this.linear = 1000;
    this.growth = Math.log(1.01);
    this.counts = new Float64Array(this.linear + 2000);
    this.total = 0;
    this.maxUs = 0;
  }
  record(us) {
    if (us > this.maxUs) this.maxUs = us;
    const b = us < this.linear ? Math.floor(us) : this.linear + Math.ceil(Math.log(us / this.linear) / this.growth);
    this.counts[Math.min(b, this.counts.length - 1)]++;
    this.total++;
  }
  upper(b) {
    return b < this.linear ? b + 1 : this.linear * Math.exp((b - this.linear) * this.growth);
  }
  quantileUs(q) {
    if (this.total === 0) return 0;
    const want = Math.ceil(q * this.total);
    let seen = 0;
    for (let b = 0; b < this.counts.length; b++) {
      seen += this.counts[b];
      if (seen >= want) return Math.min(this.upper(b), this.maxUs);
    }
    return this.maxUs;
  }
}

const opts = parseArgs(process.argv.slice(2));
const round = (x, digits = 3) => Number(x.toFixed(digits));

let db;
try {
  db = new Database(opts.db, { timeout: opts.busyTimeoutMs });
  const mode = db.pragma(`journal_mode = ${opts.journal}`, { simple: true });
  if (mode !== opts.journal) fail(`journal_mode is ${mode}, asked for ${opts.journal}`);
  if (opts.synchronous) db.pragma(`synchronous = ${opts.synchronous}`);
  db.exec(`
    CREATE TABLE IF NOT EXISTS writes(seq INTEGER PRIMARY KEY, tx INTEGER NOT NULL, payload BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS progress(id INTEGER PRIMARY KEY CHECK(id=1), last_tx INTEGER NOT NULL, rows INTEGER NOT NULL);
    INSERT OR IGNORE INTO progress(id, last_tx, rows) VALUES (1, 0, 0);
  `);
} catch (e) {
  fail(e);
}

const start = db.prepare("SELECT last_tx, rows FROM progress WHERE id = 1").get();
let lastTx = start.last_tx;
let rows = start.rows;
const startTx = lastTx;
process.stdout.write(
  JSON.stringify({
    started: true,
    db: opts.db,
    journalMode: db.pragma("journal_mode", { simple: true }),
    synchronous: db.pragma("synchronous", { simple: true }),
    sqlite: db.prepare("SELECT sqlite_version() AS v").get().v,
    betterSqlite3: require("better-sqlite3/package.json").version,
    node: process.version,
    startTx,
    rowsPerTx: opts.rowsPerTx,
    payloadBytes: opts.payloadBytes,
  }) + "\n",
);

// Prefill: random 64 KiB blobs in `fill`, 8 MiB a transaction, until the
// database (pages in use, WAL checkpointed) is about --fill-mb MiB.
if (opts.fillMb > 0) {
  try {
    const t0 = performance.now();
    db.exec("CREATE TABLE IF NOT EXISTS fill(id INTEGER PRIMARY KEY, data BLOB)");
    const size = () => db.pragma("page_count", { simple: true }) * db.pragma("page_size", { simple: true });
    const target = opts.fillMb * 1024 * 1024;
    const insert = db.prepare("INSERT INTO fill(data) VALUES (?)");
    const blob = 64 * 1024;
    const fillBatch = db.transaction((n) => {
      for (let i = 0; i < n; i++) insert.run(randomBytes(blob));
    });
    let fillRows = 0;
    for (let have = size(); have < target; have = size()) {
      const n = Math.max(1, Math.min(128, Math.ceil((target - have) / blob)));
      fillBatch(n);
      fillRows += n;
    }
    if (opts.journal === "wal") db.pragma("wal_checkpoint(TRUNCATE)");
    process.stdout.write(
      JSON.stringify({
        fill: true,
        fillMb: opts.fillMb,
        fillRows,
        fillMs: round(performance.now() - t0, 1),
        dbBytes: size(),
      }) + "\n",
    );
  } catch (e) {
    fail(e);
  }
}

const insertRow = db.prepare("INSERT INTO writes(tx, payload) VALUES (?, ?)");
const advance = db.prepare("UPDATE progress SET last_tx = ?, rows = rows + ? WHERE id = 1");
const pool = randomBytes(1 << 20);
let poolAt = 0;
const payload = () => {
  if (poolAt + opts.payloadBytes > pool.length) poolAt = 0;
  const p = pool.subarray(poolAt, poolAt + opts.payloadBytes);
  poolAt += opts.payloadBytes + 1;
  return p;
};
const commitOne = db.transaction((tx) => {
  for (let i = 0; i < opts.rowsPerTx; i++) insertRow.run(tx, payload());
  advance.run(tx, opts.rowsPerTx);
});

const stalls = new Histogram();
const writeStart = performance.now();
let committedThisRun = 0;
let stopping = false;
let finished = false;

function report(extra = {}) {
  const seconds = (performance.now() - writeStart) / 1000;
  process.stdout.write(
    JSON.stringify({
      committed: lastTx,
      rows,
      maxStallMs: round(stalls.maxUs / 1000),
      p99StallMs: round(stalls.quantileUs(0.99) / 1000),
      p50StallMs: round(stalls.quantileUs(0.5) / 1000),
      txPerSec: round(seconds > 0 ? committedThisRun / seconds : 0, 1),
      txThisRun: committedThisRun,
      elapsedMs: round(seconds * 1000, 1),
      atMs: Date.now(),
      ...extra,
    }) + "\n",
  );
}

function commitNext() {
  const tx = lastTx + 1;
  const t0 = process.hrtime.bigint();
  try {
    commitOne(tx);
  } catch (e) {
    fail(e);
  }
  stalls.record(Number(process.hrtime.bigint() - t0) / 1000);
  lastTx = tx;
  rows += opts.rowsPerTx;
  committedThisRun++;
  if (committedThisRun === 1) report();
}

function finish() {
  if (finished) return;
  finished = true;
  clearInterval(ticker);
  try {
    db.close();
  } catch (e) {
    fail(e);
  }
  report({ done: true });
  process.exit(0);
}

// Transactions are synchronous: a signal is handled between two of them,
// so the one in flight always completes.
const onSignal = () => {
  stopping = true;
  setImmediate(finish);
};
process.on("SIGTERM", onSignal);
process.on("SIGINT", onSignal);
const ticker = setInterval(() => report(), 250);

if (opts.intervalMs > 0) {
  const tick = () => {
    if (stopping) return;
    commitNext();
    setTimeout(tick, opts.intervalMs);
  };
  tick();
} else {
  // As fast as it can, yielding to the event loop every 10 ms for the
  // progress timer and signals.
  const burst = () => {
    const until = performance.now() + 10;
    while (!stopping && performance.now() < until) commitNext();
    if (!stopping) setImmediate(burst);
  };
  burst();
}
