// A Fluent Forward server for the ship tests and benchmarks: FluentServer from @fluent-org/logger (the
// fluent organisation's implementation), listening on loopback. One JSON argument:
//   {"port": 0, "out": "entries.ndjson", "tls": {"key": PEM path, "cert": PEM path},
//    "security": {"serverHostname": "...", "sharedKeyFile": path}, "countOnly": false}
// Prints "listening PORT" once it accepts connections; writes each entry as one JSON line
// {"tag", "time": [seconds, nanoseconds], "record"} to "out" (byte strings as hex), or with countOnly just
// prints "count N" every 100 ms while the count changes.
"use strict";
const fs = require("fs");
const { FluentServer, EventTime } = require("@fluent-org/logger");

const opts = JSON.parse(process.argv[2] || "{}");
const serverOptions = { listenOptions: { port: opts.port || 0, host: "127.0.0.1" } };
if (opts.tls) {
  serverOptions.tlsOptions = { key: fs.readFileSync(opts.tls.key), cert: fs.readFileSync(opts.tls.cert) };
}
if (opts.security) {
  serverOptions.security = {
    serverHostname: opts.security.serverHostname,
    sharedKey: fs.readFileSync(opts.security.sharedKeyFile, "utf8").trim(),
    authorize: !!opts.security.users,
    userDict: opts.security.users || {},
  };
}
const server = new FluentServer(serverOptions);
// written synchronously: FluentServer sends a chunk's ack before it hands out the entries, so an entry is on
// disk before its ack reaches the wire, even if this process is killed
const out = opts.out ? fs.openSync(opts.out, "a") : null;
let count = 0;
let reported = -1;

function plain(v) {
  if (v instanceof Uint8Array) return Buffer.from(v).toString("hex");
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) o[k] = plain(v[k]);
    return o;
  }
  return v;
}

server.on("entry", (tag, time, record) => {
  count += 1;
  if (out !== null) {
    const t = time instanceof EventTime ? [time.epoch, time.nano] : time;
    fs.writeSync(out, JSON.stringify({ tag, time: t, record: plain(record) }) + "\n");
  }
});

if (opts.countOnly) {
  setInterval(() => {
    if (count !== reported) {
      reported = count;
      process.stdout.write(`count ${count}\n`);
    }
  }, 100);
}

function stop() {
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

server.listen().then(() => {
  process.stdout.write(`listening ${server.port}\n`);
});
