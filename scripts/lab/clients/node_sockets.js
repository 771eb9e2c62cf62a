// Driver-side truth for Node.js applications in the capture lab: the local port of every
// socket the process opens (net.createConnection, or tls.connect for TLS), with the call
// stack that opened it. The driver is not modified; its entry points are wrapped.
//
// Required by node_client.js, or preloaded (`node --require node_sockets.js app.js`) into
// an application the lab runs as it is (mongosh): with LAB_EVENTS set, the events are
// written to that file when the process exits.
'use strict';
const net = require('net');
const tls = require('tls');
const fs = require('fs');

const events = [];
const note = (kind, fields) => events.push({ kind, t: Date.now() / 1000, ...fields });
const stack = () => new Error().stack.split('\n').slice(3, 13).map((l) => l.trim()).join(' | ');

const createConnection = net.createConnection;
net.createConnection = function (...a) {
  const sock = createConnection.apply(this, a);
  const opened = stack();
  sock.once('connect', () => note('socket', { local: `${sock.localAddress}:${sock.localPort}`, peer: `${sock.remoteAddress}:${sock.remotePort}`, stack: opened }));
  return sock;
};

const tlsConnect = tls.connect;
tls.connect = function (...a) {
  const sock = tlsConnect.apply(this, a);
  const opened = stack();
  sock.once('secureConnect', () => note('socket', { local: `${sock.localAddress}:${sock.localPort}`, peer: `${sock.remoteAddress}:${sock.remotePort}`, stack: opened, tls: sock.getProtocol(), cipher: sock.getCipher().standardName }));
  return sock;
};

if (process.env.LAB_EVENTS) {
  process.on('exit', () => fs.writeFileSync(process.env.LAB_EVENTS, JSON.stringify(events)));
}

module.exports = { events, note };
