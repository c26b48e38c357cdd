// The profile: plain fields, encrypted data across a rotated session key (prepare/submit, both
// APIs), the phone number, and the avatar upload.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startStack, makers, rejection } = require('./stack.js');
const { mockPost, getUserProfile } = require('./fake-wx.js');

// A 1×1 PNG.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64'
);

let stack;
let tmp;
before(async () => {
  stack = await startStack();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-miniprogram-files-'));
});
after(async () => {
  if (stack) await stack.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const { device, client } = makers(() => stack);

/** Another part of the mini-program calls wx.login: WeChat rotates the session key. */
function otherWxLogin(wx) {
  return new Promise((resolve, reject) => wx.login({ success: resolve, fail: reject }));
}

async function revoke(token) {
  const res = await fetch(`${stack.serverUrl}/api/v1/session`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${token}` }
  });
  assert.equal(res.status, 204);
}

test('updateProfile sends the plain fields with POST (wx.request has no PATCH) and keeps the user it answers', async () => {
  const wx = device('o-profile-plain');
  const c = client(wx);
  const reply = await c.updateProfile({ nickName: 'Bob', gender: 1 });
  assert.equal(reply.status, 200);
  assert.equal(reply.user.nickName, 'Bob');
  assert.equal(reply.user.gender, 1);
  assert.equal(reply.profileComplete, false, 'no avatar yet');
  const [sent] = wx.requestsTo('/api/v1/me/profile');
  assert.equal(sent.method, 'POST');
  assert.deepEqual(JSON.parse(sent.body), { nickName: 'Bob', gender: 1 });
  assert.equal(c.user.nickName, 'Bob');
  assert.equal(wx.getStorageSync('wxlogin.session').user.nickName, 'Bob');
  assert.equal((await c.me()).user.nickName, 'Bob');
});

for (const api of ['v1', 'classic']) {
  test(`${api}: a key rotated after login; data made after prepare() is accepted`, async () => {
    const openId = `o-profile-rotated-${api}`;
    const wx = device(openId, { profile: { nickName: `Rotated ${api}`, avatarUrl: 'https://example.com/r.png', gender: 1 } });
    const c = client(wx, { api });
    await c.login();
    await otherWxLogin(wx); // the server's session key is stale from here on
    await c.prepare(); // the page's onShow
    const loginsBefore = wx.calls.login;
    const data = await getUserProfile(wx); // the button: encrypted with the current key

    // Control: without the fresh code the server cannot decrypt it.
    const plain = await fetch(`${stack.serverUrl}/api/v1/me/profile/encrypted`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', Authorization: `Bearer ${c.token}` },
      body: JSON.stringify({ encryptedData: data.encryptedData, iv: data.iv })
    });
    assert.equal(plain.status, 422);
    assert.equal((await plain.json()).error, 'decrypt_failed');

    const reply = await c.submitEncryptedProfile(data);
    assert.equal(wx.calls.login, loginsBefore, 'no wx.login between the data and its submission');
    assert.equal(reply.status, 200);
    assert.equal(reply.user.nickName, `Rotated ${api}`);
    assert.equal(reply.user.openId, openId);
    assert.equal(c.user.nickName, `Rotated ${api}`);
    assert.equal((await c.me()).user.nickName, `Rotated ${api}`);

    if (api === 'v1') {
      const [sent] = wx.requestsTo('/api/v1/me/profile/encrypted');
      const body = JSON.parse(sent.body);
      assert.equal(typeof body.code, 'string');
      assert.equal(sent.header.Authorization, `Bearer ${c.token}`);
      assert.equal(wx.requestsTo('/updateUserInfo').length, 0);
    } else {
      const [sent] = wx.requestsTo('/updateUserInfo');
      assert.equal(sent.header['content-type'], 'application/x-www-form-urlencoded');
      const form = new URLSearchParams(sent.body);
      assert.equal(form.get('encryptedData'), data.encryptedData);
      assert.equal(form.get('iv'), data.iv);
      assert.equal(form.get('token'), c.token);
      assert.ok(form.get('code'));
      assert.equal(wx.requestsTo('/api/v1/me/profile/encrypted').length, 0);
      assert.equal(wx.requestsTo('/onLogin').length, 1);
    }
  });
}

test('the held code is used once; afterwards the server holds the newest key', async () => {
  const wx = device('o-profile-once');
  const c = client(wx);
  await c.prepare();
  await c.submitEncryptedProfile(await getUserProfile(wx));
  // Data made now uses the key of prepare's code, which the server took on: no code needed.
  const again = await c.submitEncryptedProfile(await getUserProfile(wx));
  assert.equal(again.status, 200);
  const sent = wx.requestsTo('/api/v1/me/profile/encrypted').map((e) => JSON.parse(e.body));
  assert.equal(sent.length, 2);
  assert.equal(typeof sent[0].code, 'string');
  assert.equal(sent[1].code, undefined);
  assert.equal(wx.calls.login, 2, "prepare's own ensureLogin, then its code");
});

test('without prepare() after a wx.login elsewhere: rejected locally, nothing sent', async () => {
  const storage = new Map();
  const wx = device('o-profile-unprepared', { storage });
  await client(wx).login();
  // The next launch: a session from storage, and someone called wx.login meanwhile.
  const c = client(device('o-profile-unprepared', { storage }));
  const other = device('o-profile-unprepared', { storage });
  await otherWxLogin(other);
  const data = await getUserProfile(other);
  const err = await rejection(c.submitEncryptedProfile(data));
  assert.equal(err.status, 0);
  assert.equal(err.error, 'not_prepared');
  assert.ok(err.message.length > 0);
});

test('a held code past its lifetime: rejected locally as prepare_expired, no wx.login', async () => {
  let clock = Date.now();
  const wx = device('o-profile-expired');
  const c = client(wx, { now: () => clock });
  const held = await c.prepare();
  assert.ok(held.codeExpiresAt > clock && held.codeExpiresAt <= clock + 5 * 60e3);
  const data = await getUserProfile(wx);
  clock += 5 * 60e3;
  const logins = wx.calls.login;
  const requests = wx.calls.request;
  const err = await rejection(c.submitEncryptedProfile(data));
  assert.equal(err.status, 0);
  assert.equal(err.error, 'prepare_expired');
  assert.equal(wx.calls.login, logins);
  assert.equal(wx.calls.request, requests);
  // prepare() again, and the new data goes through.
  await c.prepare();
  const reply = await c.submitEncryptedProfile(await getUserProfile(wx));
  assert.equal(reply.user.nickName, 'Alice');
});

test('the token dies between prepare() and submit: logs in with the held code, no wx.login', async () => {
  const wx = device('o-profile-dead-token');
  const c = client(wx);
  const first = await c.login();
  await c.prepare();
  await revoke(first.token);
  const logins = wx.calls.login;
  const data = await getUserProfile(wx);
  const reply = await c.submitEncryptedProfile(data);
  assert.equal(reply.user.nickName, 'Alice');
  assert.equal(wx.calls.login, logins, 'no wx.login: the held code logged in');
  const tries = wx.requestsTo('/api/v1/me/profile/encrypted');
  assert.deepEqual(tries.map((t) => t.status), [401, 200]);
  assert.equal(wx.requestsTo('/api/v1/login').length, 2);
  assert.notEqual(c.token, first.token);
});

test('bindPhone sends the getPhoneNumber code and keeps the number', async () => {
  const wx = device('o-profile-phone');
  const c = client(wx);
  await c.login();
  const { code } = await mockPost(stack.mockUrl, '/mock/phone-codes', {
    openId: 'o-profile-phone',
    phoneNumber: '+8613800138000'
  });
  const reply = await c.bindPhone(code);
  assert.equal(reply.status, 200);
  assert.equal(reply.user.phoneNumber, '+8613800138000');
  assert.equal(c.user.phoneNumber, '+8613800138000');
  assert.deepEqual(JSON.parse(wx.requestsTo('/api/v1/me/phone')[0].body), { code });

  // A wx.login code is no phone code.
  const { code: loginCode } = await mockPost(stack.mockUrl, '/mock/codes', { openId: 'o-profile-phone' });
  const err = await rejection(c.bindPhone(loginCode));
  assert.equal(err.status, 400);
  assert.equal(err.error, 'invalid_code');
});

test('uploadAvatar: multipart to /api/v1/me/avatar, the URL serves the same PNG', async () => {
  const file = path.join(tmp, 'avatar.png');
  fs.writeFileSync(file, PNG);
  const wx = device('o-profile-avatar');
  const c = client(wx);
  const first = await c.login();

  const reply = await c.uploadAvatar(file);
  assert.equal(reply.status, 200);
  assert.equal(typeof reply.profileComplete, 'boolean');
  assert.match(reply.user.avatarUrl, /\/avatars\/[^/?#]+$/);
  assert.equal(c.user.avatarUrl, reply.user.avatarUrl);
  const [sent] = wx.requestsTo('/api/v1/me/avatar');
  assert.equal(sent.api, 'uploadFile');
  assert.equal(sent.name, 'file');
  assert.equal(sent.header.Authorization, `Bearer ${first.token}`);
  const served = await fetch(reply.user.avatarUrl);
  assert.equal(served.status, 200);
  assert.match(served.headers.get('content-type'), /^image\/png/);
  assert.deepEqual(Buffer.from(await served.arrayBuffer()), PNG);

  // A dead token: one new login, the upload retried once.
  await revoke(first.token);
  const again = await c.uploadAvatar(file);
  assert.equal(again.status, 200);
  assert.equal(wx.calls.login, 2);
  assert.deepEqual(wx.requestsTo('/api/v1/me/avatar').map((t) => t.status), [200, 401, 200]);
});
