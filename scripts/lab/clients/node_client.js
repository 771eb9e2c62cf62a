// A Node.js driver application for the capture lab, with driver-side truth.
// The driver is not modified: CMAP and SDAM monitoring events are recorded, and so is the
// local port of every socket the driver opens, with the call stack that opened it
// (node_sockets.js).
// TLS secrets go to a key log through node's own --tls-keylog=FILE flag.
// With --mongoose=1 the application is a Mongoose one: Mongoose makes the MongoClient
// (adding its own name to the handshake's driver metadata) and the operations go through
// a Mongoose model.
'use strict';
const fs = require('fs');
const { MongoClient } = require('mongodb');
const { events, note } = require('./node_sockets');

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split(/=(.*)/s).slice(0, 2)));

// Mongoose connects when the connection is made (5.x: its legacy topology by default).
const mongooseConnections = new Map();
async function mongooseClient(uri, tlsOptions) {
  const mongoose = require('mongoose');
  const conn = mongoose.createConnection(uri, { ...tlsOptions });
  await new Promise((resolve, reject) => conn.once('open', resolve).once('error', reject));
  const client = conn.getClient();
  mongooseConnections.set(client, conn);
  return client;
}

function mongooseModel(client, ci, t) {
  const mongoose = require('mongoose');
  const conn = mongooseConnections.get(client);
  return conn.model(`Item${ci}_${t}`, new mongoose.Schema({ i: Number }), `mongoose${ci}_${t}`);
}

async function main() {
  const seconds = Number(args.seconds || 20);
  const until = Date.now() + seconds * 1000;
  const clients = [];
  for (let i = 0; i < Number(args.clients || 1); i++) {
    // LAB_TLS_CIPHERS: the TLS suites to offer (the driver passes `ciphers` to tls.connect).
    const tlsOptions = process.env.LAB_TLS_CIPHERS ? { ciphers: process.env.LAB_TLS_CIPHERS } : {};
    const c = args.mongoose ? await mongooseClient(args.uri, tlsOptions) : new MongoClient(args.uri, { monitorCommands: false, ...tlsOptions });
    c.on('connectionCreated', (e) => note('cmap-created', { address: e.address, id: e.connectionId }));
    c.on('connectionClosed', (e) => note('cmap-closed', { address: e.address, id: e.connectionId, reason: e.reason }));
    c.on('serverHeartbeatStarted', (e) => note('heartbeat-started', { address: e.connectionId, awaited: e.awaited }));
    if (!args.mongoose) await c.connect();
    clients.push(c);
  }
  const pause = Number(args.pause || 0.5) * 1000;
  const workers = [];
  clients.forEach((c, ci) => {
    for (let t = 0; t < Number(args.threads || 1); t++) {
      workers.push((async () => {
        const coll = args.mongoose ? mongooseModel(c, ci, t) : c.db('labdb').collection(`node${ci}_${t}`);
        let i = 0;
        while (Date.now() < until) {
          try {
            if (args.mongoose) {
              await coll.create({ i: i++ });
              await coll.find({}).limit(3).lean();
            } else {
              await coll.insertOne({ i: i++ });
              await coll.find({}).limit(3).toArray();
            }
          } catch (e) {
            note('op-error', { error: String(e) });
          }
          await new Promise((r) => setTimeout(r, pause));
        }
      })());
    }
  });
  await Promise.all(workers);
  while (Date.now() < until) await new Promise((r) => setTimeout(r, 200));
  const version = require('mongodb/package.json').version;
  note('driver', args.mongoose
    ? { name: 'nodejs|Mongoose', version: `${version}|${require('mongoose/package.json').version}` }
    : { name: 'nodejs', version });
  fs.writeFileSync(args.events, JSON.stringify(events));
  process.exit(0); // leave connections open until the process ends, like a running app
}
main().catch((e) => { console.error(e); process.exit(1); });
