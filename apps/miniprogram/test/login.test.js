// Logging in: both APIs, the stored session, single flight, headers, and the error shape.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { createClient, DEFAULT_STORAGE_KEY } = require('../wxlogin.js');
const { startStack, makers, rejection } = require('./stack.js');

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  if (stack) await stack.close();
});

const { device, client } = makers(() => stack);

test('the first login stores the token and resolves the session with the user', async () => {
  const wx = device('o-login-first');
  const c = client(wx);
  assert.equal(c.token, null);
  assert.equal(c.user, null);

  const s = await c.login();
  assert.equal(wx.calls.login, 1);
  assert.match(s.token, /^wxl_/);
  assert.equal(s.isNewUser, true);
  assert.equal(s.user.openId, 'o-login-first');
  assert.ok(Date.parse(s.expiresAt) > Date.now(), s.expiresAt);

  const stored = wx.getStorageSync(DEFAULT_STORAGE_KEY);
  assert.equal(DEFAULT_STORAGE_KEY, 'wxlogin.session');
  assert.equal(stored.token, s.token);
  assert.equal(stored.expiresAt, s.expiresAt);
  assert.deepEqual(stored.user, s.user);
  assert.equal(c.token, s.token);
  assert.equal(c.user.id, s.user.id);

  const [sent] = wx.requestsTo('/api/v1/login');
  assert.equal(sent.method, 'POST');
  assert.equal(sent.header['content-type'], 'application/json');
  assert.deepEqual(Object.keys(JSON.parse(sent.body)), ['code']);

  // The server takes the stored token.
  const me = await c.me();
  assert.equal(me.user.id, s.user.id);
  assert.equal(wx.requestsTo('/api/v1/me')[0].header.Authorization, `Bearer ${s.token}`);
  assert.equal(wx.calls.login, 1);
});

test('api "classic" logs in with a form-urlencoded POST /onLogin', async () => {
  const wx = device('o-login-classic');
  const c = client(wx, { api: 'classic' });
  const s = await c.login();
  assert.equal(s.user.openId, 'o-login-classic');
  assert.equal(wx.requestsTo('/api/v1/login').length, 0);
  const [sent] = wx.requestsTo('/onLogin');
  assert.equal(sent.header['content-type'], 'application/x-www-form-urlencoded');
  assert.match(sent.body, /^code=[^&]+$/);
  assert.equal(wx.getStorageSync('wxlogin.session').token, s.token);
  // A classic token works on /api/v1 too.
  assert.equal((await c.me()).user.id, s.user.id);
});

test('a stored session is reused: a second client on the same storage calls no wx.login', async () => {
  const storage = new Map();
  const first = device('o-login-stored', { storage });
  const s = await client(first).login();

  const again = device('o-login-stored', { storage });
  const c = client(again);
  assert.equal(c.token, s.token, 'the token getter reads storage');
  assert.equal(c.user.id, s.user.id);
  const ensured = await c.ensureLogin();
  assert.equal(ensured.token, s.token);
  const me = await c.me();
  assert.equal(me.user.id, s.user.id);
  assert.equal(again.calls.login, 0);
  assert.equal(again.requestsTo('/api/v1/login').length, 0);
  assert.equal(again.requestsTo('/api/v1/me')[0].header.Authorization, `Bearer ${s.token}`);
});

test('a stored session past its expiresAt is not used: ensureLogin logs in', async () => {
  const wx = device('o-login-stale');
  const s = await client(wx).login();
  wx.setStorageSync('wxlogin.session', Object.assign({}, s, { expiresAt: '2020-01-01T00:00:00Z' }));

  const c = client(wx);
  const fresh = await c.ensureLogin();
  assert.equal(wx.calls.login, 2);
  assert.notEqual(fresh.token, s.token);
  assert.equal(wx.getStorageSync('wxlogin.session').token, fresh.token);
});

test('concurrent ensureLogin calls share one login', async () => {
  const wx = device('o-login-concurrent');
  const c = client(wx);
  const sessions = await Promise.all([c.ensureLogin(), c.ensureLogin(), c.ensureLogin(), c.me()]);
  assert.equal(wx.calls.login, 1);
  assert.equal(wx.requestsTo('/api/v1/login').length, 1);
  assert.equal(sessions[0].token, sessions[1].token);
  assert.equal(sessions[1].token, sessions[2].token);
  assert.equal(sessions[3].user.id, sessions[0].user.id);
});

test('storageKey names where the session is kept', async () => {
  const wx = device('o-login-key');
  const s = await client(wx, { storageKey: 'my.key' }).login();
  assert.equal(wx.getStorageSync('my.key').token, s.token);
  assert.equal(wx.getStorageSync('wxlogin.session'), '');
});

test('Accept-Language is the mini-program language, zh_CN sent as zh-CN', async () => {
  const base = device('o-lang-base', { language: 'zh_CN', systemLanguage: 'en' });
  await client(base).me();
  for (const e of base.log) assert.equal(e.header['Accept-Language'], 'zh-CN', e.url);

  const sys = device('o-lang-sys', { language: null, systemLanguage: 'zh_TW' });
  await client(sys).me();
  assert.ok(sys.log.length >= 2);
  for (const e of sys.log) assert.equal(e.header['Accept-Language'], 'zh-TW', e.url);

  const none = device('o-lang-none', { language: null, systemLanguage: null });
  await client(none).me();
  for (const e of none.log) assert.equal(e.header['Accept-Language'], undefined, e.url);
});

test('wx defaults to the global wx', async () => {
  const wx = device('o-login-global');
  global.wx = wx;
  try {
    const s = await createClient({ baseUrl: stack.serverUrl }).login();
    assert.equal(s.user.openId, 'o-login-global');
    assert.equal(wx.calls.login, 1);
  } finally {
    delete global.wx;
  }
});

test('errors reject with the status, error and message the server sent', async () => {
  const wx = device('o-login-errors');
  const c = client(wx);
  wx.nextCode = 'not-a-code-wechat-gave';
  const bad = await rejection(c.login());
  const answered = wx.requestsTo('/api/v1/login')[0].data;
  assert.equal(bad.status, 400);
  assert.equal(bad.error, 'invalid_code');
  assert.equal(bad.message, answered.message);
  assert.ok(bad.message.length > 0);
  assert.ok(bad instanceof Error);
  assert.equal(c.token, null, 'a failed login stores nothing');

  const missing = await rejection(c.request({ url: '/api/v1/no-such-thing' }));
  assert.equal(missing.status, 404);
  assert.equal(missing.error, 'not_found');

  const invalid = await rejection(c.updateProfile({ gender: 7 }));
  assert.equal(invalid.status, 400);
  assert.equal(invalid.error, 'invalid_request');
  assert.match(invalid.message, /gender/);
});

test('the server answers errors in the mini-program language; the error code stays', async () => {
  const chinese = /[\u4e00-\u9fff]/;
  const answers = {};
  for (const language of ['zh_CN', 'en']) {
    const wx = device(`o-login-lang-${language}`, { language });
    const c = client(wx);
    wx.nextCode = 'not-a-code-wechat-gave';
    const bad = await rejection(c.login());
    assert.equal(bad.status, 400);
    assert.equal(bad.error, 'invalid_code');
    await c.login();
    const invalid = await rejection(c.updateProfile({ gender: 7 }));
    assert.equal(invalid.error, 'invalid_request');
    assert.match(invalid.message, /gender/);
    answers[language] = [bad.message, invalid.message];
  }
  for (const m of answers.zh_CN) assert.match(m, chinese);
  for (const m of answers.en) assert.doesNotMatch(m, chinese);
  assert.notEqual(answers.zh_CN[0], answers.en[0]);
});

test('a network failure rejects with status 0, network_error and wx errMsg', async () => {
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  const wx = device('o-login-network');
  const c = createClient({ baseUrl: `http://127.0.0.1:${port}`, wx });
  const err = await rejection(c.login());
  assert.equal(err.status, 0);
  assert.equal(err.error, 'network_error');
  assert.match(err.message, /^request:fail/);
});

test('another app in WeChat\'s Referer is refused; appId names ours with X-WX-AppId', async () => {
  // DevTools with the tourist app id sends Referer .../touristappid/devtools/page-frame.html.
  const tourist = device('o-login-tourist', { appId: 'touristappid' });
  const err = await rejection(client(tourist).login());
  assert.equal(err.status, 400);
  assert.equal(err.error, 'invalid_request');
  assert.match(err.message, /Referer/);

  const named = device('o-login-tourist', { appId: 'touristappid' });
  const s = await client(named, { appId: 'wx0000000000000000' }).login();
  assert.equal(s.user.openId, 'o-login-tourist');
  assert.equal(named.requestsTo('/api/v1/login')[0].header['X-WX-AppId'], 'wx0000000000000000');
});

test('request resolves paths against baseUrl and sends the token to our server only', async () => {
  const wx = device('o-login-foreign');
  const c = client(wx);
  const me = await c.request({ url: '/api/v1/me' });
  assert.equal(me.status, 200);
  assert.equal(me.user.openId, 'o-login-foreign');

  const stats = await c.request({ url: `${stack.mockUrl}/mock/stats` });
  assert.equal(typeof stats.calls.jscode2session, 'number');
  const [foreign] = wx.requestsTo('/mock/stats');
  assert.equal(foreign.header.Authorization, undefined);
  assert.equal(wx.requestsTo('/api/v1/me')[0].url, `${stack.serverUrl}/api/v1/me`);
});
