// pickd-lite: a tiny Node.js app (no npm packages); its database is reached through sqlite3.
const http = require('http');
const fs = require('fs');
const { execFileSync } = require('child_process');
const DB = process.env.APP_DB.replace(/^sqlite:\/\//, '');
const PORT = Number(process.env.PORT);
const VERSION = fs.readFileSync(__dirname + '/VERSION', 'utf8').trim();
const TRUNCATE = fs.existsSync(__dirname + '/TRUNCATE');
const q = (sql) => { const o = execFileSync('sqlite3', ['-json', DB, sql]).toString().trim(); return o ? JSON.parse(o) : []; };
const safe = (s) => /^[A-Za-z0-9_-]+$/.test(s) ? s : null;
const kg = (g) => (g / 1000).toFixed(3);
function send(res, status, body) { res.writeHead(status, {'Content-Type': 'application/json', 'X-Build': VERSION}); res.end(JSON.stringify(body)); }
http.createServer((req, res) => {
  let m;
  if (req.url === '/healthz') { res.writeHead(200, {'Content-Type': 'text/plain', 'X-Build': VERSION}); return res.end('ok'); }
  if (req.method === 'POST' && req.url === '/rpc') {   // JSON-RPC 2.0: "status", else an error
    let body = ''; req.on('data', (c) => body += c); req.on('end', () => {
      const r = JSON.parse(body);
      const out = r.method === 'status' ? {result: {version: VERSION, db: q('SELECT 1 AS up')[0].up === 1}}
        : {error: {code: -32601, message: `method not found: ${r.method}`}};
      send(res, 200, {jsonrpc: '2.0', id: r.id, ...out});
    }); return;
  }
  if (req.method === 'GET' && (m = req.url.match(/^\/v1\/([^/]+)\/stock\/([^/]+)$/))) {
    const [t, s] = [safe(m[1]), safe(m[2])];
    const rows = q(`SELECT qty_g FROM stock WHERE tenant='${t}' AND sku='${s}'`);
    return rows.length ? send(res, 200, {sku: s, qty: {value: kg(rows[0].qty_g), unit: 'kg'}}) : send(res, 404, {error: 'no such sku'});
  }
  if (req.method === 'POST' && (m = req.url.match(/^\/v1\/([^/]+)\/adjust$/))) {
    let body = ''; req.on('data', (c) => body += c); req.on('end', () => {
      const b = JSON.parse(body); const t = safe(m[1]); const s = safe(b.sku);
      let grams = Math.round(Number(b.kg) * 1000);
      if (TRUNCATE) grams = Math.trunc(Number(b.kg)) * 1000;   // the defect: whole kg only
      q(`INSERT INTO ledger (tenant, sku, qty_g, ref) VALUES ('${t}', '${s}', ${grams}, '${safe(b.ref) || 'x'}');` +
        `UPDATE stock SET qty_g = qty_g + ${grams} WHERE tenant='${t}' AND sku='${s}';`);
      send(res, 201, {booked: {sku: s, qty: {value: kg(grams), unit: 'kg'}}});
    }); return;
  }
  send(res, 404, {error: 'not found'});
}).listen(PORT, '127.0.0.1');
