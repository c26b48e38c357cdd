// Sessions: the single re-login on a dead token (token_expired, invalid_token), no loops,
// refresh and logout.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { createClient } = require('../wxlogin.js');
const { startStack, makers, rejection } = require('./stack.js');

let stack;
let proxy;
before(async () => {
  stack = await startStack();
  proxy = await startProxy(stack.serverUrl);
});
after(async () => {
  if (proxy) await new Promise((resolve) => proxy.server.close(resolve));
  if (stack) await stack.close();
});

/**
 * A proxy in front of the server that answers every `GET /api/v1/me` with a 401 (error
 * `invalid_token`, or the `X-Test-Error` header's value) whatever the token, and counts them;
 * everything else goes through.
 */
function startProxy(target) {
  const { hostname, port } = new URL(target);
  const counts = { me: 0 };
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/api/v1/me') {
      counts.me += 1;
      const error = req.headers['x-test-error'] || 'invalid_token';
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 401, error, message: 'refused by the test proxy' }));
      return;
    }
    const upstream = http.request(
      { hostname, port, path: req.url, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      }
    );
    upstream.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 1;
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({ server, counts, url: `http://127.0.0.1:${server.address().port}` });
    });
  });
}

const { device, client } = makers(() => stack);

/** Logs `token` out behind the client's back (another device, an operator's revocation). */
async function revoke(baseUrl, token) {
  const res = await fetch(`${baseUrl}/api/v1/session`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${token}` }
  });
  assert.equal(res.status, 204);
}

async function meWith(baseUrl, token) {
  const res = await fetch(`${baseUrl}/api/v1/me`, { headers: { Authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.json() };
}

test('invalid_token: one new login, and the request retried with the new token', async () => {
  const wx = device('o-session-revoked');
  const c = client(wx);
  const first = await c.login();
  await revoke(stack.serverUrl, first.token);

  const me = await c.me();
  assert.equal(me.user.id, first.user.id);
  assert.equal(wx.calls.login, 2);
  const tries = wx.requestsTo('/api/v1/me');
  assert.deepEqual(tries.map((t) => t.status), [401, 200]);
  assert.equal(tries[0].data.error, 'invalid_token');
  assert.equal(tries[0].header.Authorization, `Bearer ${first.token}`);
  assert.notEqual(c.token, first.token);
  assert.equal(tries[1].header.Authorization, `Bearer ${c.token}`);
  assert.equal(wx.getStorageSync('wxlogin.session').token, c.token);
});

test('token_expired (idle past session.idle_timeout_secs): one new login and one retry', async () => {
  const idle = await stack.server({ WXLOGIN__SESSION__IDLE_TIMEOUT_SECS: '1' });
  const wx = device('o-session-idle');
  const c = createClient({ baseUrl: idle.url, wx });
  const first = await c.login();
  // expiresAt is 30 days away: only the server knows the token has expired.
  assert.ok(Date.parse(first.expiresAt) > Date.now() + 86400e3);
  await new Promise((resolve) => setTimeout(resolve, 2100));

  const me = await c.me();
  assert.equal(me.user.openId, 'o-session-idle');
  const tries = wx.requestsTo('/api/v1/me');
  assert.deepEqual(tries.map((t) => t.status), [401, 200]);
  assert.equal(tries[0].data.error, 'token_expired');
  assert.equal(wx.calls.login, 2);
  assert.notEqual(c.token, first.token);
});

test('a request still refused after the new login is not retried again (no loop)', async () => {
  const wx = device('o-session-loop');
  const c = createClient({ baseUrl: proxy.url, wx });
  await c.login();
  const before = proxy.counts.me;

  const err = await rejection(c.me());
  assert.equal(err.status, 401);
  assert.equal(err.error, 'invalid_token');
  assert.equal(proxy.counts.me - before, 2, 'the first try and one retry');
  assert.equal(wx.calls.login, 2, 'the first login and one re-login');

  // Also for token_expired.
  const expired = await rejection(c.request({ url: '/api/v1/me', header: { 'X-Test-Error': 'token_expired' } }));
  assert.equal(expired.error, 'token_expired');
  assert.equal(proxy.counts.me - before, 4);
  assert.equal(wx.calls.login, 3);
});

test('a 401 with another error code is not retried', async () => {
  const wx = device('o-session-other-401');
  const c = createClient({ baseUrl: proxy.url, wx });
  await c.login();
  const before = proxy.counts.me;
  const err = await rejection(c.request({ url: '/api/v1/me', header: { 'X-Test-Error': 'something_else' } }));
  assert.equal(err.status, 401);
  assert.equal(err.error, 'something_else');
  assert.equal(err.message, 'refused by the test proxy');
  assert.equal(proxy.counts.me - before, 1);
  assert.equal(wx.calls.login, 1);
});

test('concurrent requests on a dead token share one new login', async () => {
  const wx = device('o-session-herd');
  const c = client(wx);
  const first = await c.login();
  await revoke(stack.serverUrl, first.token);
  const answers = await Promise.all([c.me(), c.me(), c.me()]);
  for (const a of answers) assert.equal(a.user.id, first.user.id);
  assert.equal(wx.calls.login, 2);
  assert.equal(wx.requestsTo('/api/v1/me').filter((t) => t.status === 401).length, 3);
});

test('refresh stores the new token; the old one is refused', async () => {
  const wx = device('o-session-refresh');
  const c = client(wx);
  const first = await c.login();
  const refreshed = await c.refresh();
  assert.notEqual(refreshed.token, first.token);
  assert.ok(refreshed.expiresAt);
  assert.equal(refreshed.user.id, first.user.id);
  assert.equal(c.token, refreshed.token);
  const stored = wx.getStorageSync('wxlogin.session');
  assert.equal(stored.token, refreshed.token);
  assert.equal(stored.expiresAt, refreshed.expiresAt);
  assert.equal(stored.user.id, first.user.id);
  assert.equal(wx.requestsTo('/api/v1/session/refresh')[0].method, 'POST');

  const old = await meWith(stack.serverUrl, first.token);
  assert.equal(old.status, 401);
  assert.equal(old.body.error, 'invalid_token');
  assert.equal((await c.me()).user.id, first.user.id);
  assert.equal(wx.calls.login, 1);
});

test('logout ends the session on the server and clears storage and memory', async () => {
  const wx = device('o-session-logout');
  const c = client(wx);
  const s = await c.login();
  await c.logout();
  assert.equal(wx.requestsTo('/api/v1/session')[0].method, 'DELETE');
  assert.equal(wx.requestsTo('/api/v1/session')[0].status, 204);
  assert.equal(wx.storage.has('wxlogin.session'), false);
  assert.equal(c.token, null);
  assert.equal(c.user, null);
  const old = await meWith(stack.serverUrl, s.token);
  assert.equal(old.status, 401);
  assert.equal(old.body.error, 'invalid_token');
  // A later call logs in anew.
  await c.me();
  assert.equal(wx.calls.login, 2);
});

test('logout clears locally even when the server answers 401', async () => {
  const wx = device('o-session-logout-401');
  const c = client(wx);
  const s = await c.login();
  await revoke(stack.serverUrl, s.token);
  await c.logout();
  assert.equal(wx.requestsTo('/api/v1/session')[0].status, 401);
  assert.equal(wx.storage.has('wxlogin.session'), false);
  assert.equal(c.token, null);
  assert.equal(wx.calls.login, 1, 'logging out never logs in');
});

test('logout clears locally when the server cannot be reached, and rejects', async () => {
  const storage = new Map();
  const wx = device('o-session-logout-down', { storage });
  await client(wx).login();
  const offline = createClient({ baseUrl: 'http://127.0.0.1:9', wx });
  const err = await rejection(offline.logout());
  assert.equal(err.status, 0);
  assert.equal(err.error, 'network_error');
  assert.equal(storage.has('wxlogin.session'), false);
});

test('a newer token another client stored is used on a 401 instead of a new login', async () => {
  const storage = new Map();
  const wxA = device('o-session-shared', { storage });
  const wxB = device('o-session-shared', { storage });
  const a = client(wxA);
  const b = client(wxB);
  await a.login();
  await b.me(); // b holds the same token in memory
  const refreshed = await a.refresh(); // the old token is dead, storage holds the new one
  const me = await b.me();
  assert.equal(me.user.openId, 'o-session-shared');
  assert.equal(wxB.calls.login, 0);
  assert.deepEqual(wxB.requestsTo('/api/v1/me').map((t) => t.status), [200, 401, 200]);
  assert.equal(wxB.requestsTo('/api/v1/me')[2].header.Authorization, `Bearer ${refreshed.token}`);
  assert.equal(storage.has('wxlogin.session'), true);
});
