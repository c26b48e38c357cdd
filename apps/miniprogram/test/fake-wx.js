// A fake `wx` for the helper's tests: the parts of the mini-program API that wxlogin.js uses,
// over real HTTP (Node's fetch, FormData, Blob) to the real server and the mock WeChat.
// Helper module, no tests of its own.
//
// - `login` mints a code from the mock's control API (`POST /mock/codes`) for the device's
//   fixed openid; the mock rotates that user's session key on every mint, as wx.login may.
// - `request` converts `data` as WeChat documents it (JSON for application/json, the default;
//   a query string for form bodies and GET) and sets WeChat's own Referer
//   (`https://servicewechat.com/{appid}/devtools/page-frame.html`).
// - `uploadFile` reads the temporary file from disk and sends it as multipart/form-data; its
//   `success` gives `data` as a string, as wx.uploadFile does.
// - `getUserProfile` "creates" encrypted profile data at call time: the mock encrypts it with
//   the user's current session key (`POST /mock/encrypt`). No rawData/signature: the mock does
//   not hand out session keys to sign with.
// - Storage is a Map (share one between two fakes to model one device); values are stored as
//   JSON, and a missing key reads as '' as in WeChat.
// Every call is counted (`calls`) and every request logged (`log`) for the tests' assertions.
'use strict';

const WX_METHODS = ['OPTIONS', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'CONNECT'];

const fs = require('node:fs');
const path = require('node:path');
const { APP_ID } = require('./stack.js');

async function mockPost(mockUrl, route, body) {
  const res = await fetch(mockUrl + route, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body)
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`mock ${route} answered ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

function queryString(data) {
  return Object.keys(data)
    .filter((k) => data[k] !== undefined)
    .map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(data[k])}`)
    .join('&');
}

function headerValue(header, name) {
  const key = Object.keys(header || {}).find((k) => k.toLowerCase() === name);
  return key === undefined ? undefined : header[key];
}

const TYPES = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp' };

/**
 * A fake device. `openId`: the WeChat user on it; `mockUrl`: the mock WeChat; `storage`: a Map
 * (a new one by default); `language`: what getAppBaseInfo reports (`null`: no getAppBaseInfo);
 * `systemLanguage`: what getSystemInfoSync reports (`null`: no getSystemInfoSync); `appId`: the
 * app in WeChat's Referer.
 */
function createFakeWx(opts) {
  const o = Object.assign(
    {
      storage: new Map(),
      language: 'zh_CN',
      systemLanguage: null,
      appId: APP_ID,
      profile: { nickName: 'Alice', avatarUrl: 'https://example.com/alice.png', gender: 2 }
    },
    opts
  );
  if (!o.mockUrl || !o.openId) throw new Error('createFakeWx needs mockUrl and openId');
  const referer = `https://servicewechat.com/${o.appId}/devtools/page-frame.html`;
  const calls = { login: 0, request: 0, uploadFile: 0, getUserProfile: 0 };
  const log = [];

  function later(cb, arg) {
    if (typeof cb === 'function') cb(arg);
  }

  const fake = {
    calls,
    log,
    storage: o.storage,
    openId: o.openId,
    /** Set to make the next wx.login give this code instead of minting one. */
    nextCode: null,

    login(params) {
      calls.login += 1;
      const p = params || {};
      const minted = fake.nextCode
        ? Promise.resolve({ code: fake.nextCode })
        : mockPost(o.mockUrl, '/mock/codes', { openId: o.openId });
      fake.nextCode = null;
      minted.then(
        ({ code }) => {
          later(p.success, { code, errMsg: 'login:ok' });
          later(p.complete, { code, errMsg: 'login:ok' });
        },
        (err) => {
          later(p.fail, { errMsg: `login:fail ${err.message}` });
          later(p.complete, { errMsg: `login:fail ${err.message}` });
        }
      );
    },

    request(params) {
      calls.request += 1;
      const p = Object.assign({ method: 'GET', header: {}, dataType: 'json' }, params);
      const method = p.method.toUpperCase();
      // wx.request knows only these methods (no PATCH), as WeChat documents it.
      if (WX_METHODS.indexOf(method) < 0) {
        const result = { errMsg: `request:fail parameter error: method should be one of ${WX_METHODS.join(', ')}` };
        log.push({ api: 'request', method, url: p.url, refused: true });
        setTimeout(() => {
          if (p.fail) p.fail(result);
          if (p.complete) p.complete(result);
        }, 0);
        return;
      }
      const header = Object.assign({}, p.header);
      if (headerValue(header, 'content-type') === undefined) header['content-type'] = 'application/json';
      const type = headerValue(header, 'content-type');
      let url = p.url;
      let body;
      if (method === 'GET' || method === 'HEAD') {
        if (p.data && typeof p.data === 'object') {
          const q = queryString(p.data);
          if (q) url += (url.indexOf('?') >= 0 ? '&' : '?') + q;
        }
      } else if (typeof p.data === 'string' || p.data instanceof ArrayBuffer) {
        body = p.data;
      } else if (p.data !== undefined && p.data !== null) {
        body = /application\/x-www-form-urlencoded/i.test(type) ? queryString(p.data) : JSON.stringify(p.data);
      }
      const entry = { api: 'request', method, url, header, body };
      log.push(entry);
      fetch(url, { method, headers: Object.assign({ Referer: referer }, header), body })
        .then(async (res) => {
          const text = await res.text();
          let data = text;
          if (p.dataType === 'json') {
            try {
              data = JSON.parse(text);
            } catch (e) {
              data = text;
            }
          }
          entry.status = res.status;
          entry.data = data;
          const result = {
            data,
            statusCode: res.status,
            header: Object.fromEntries(res.headers),
            errMsg: 'request:ok'
          };
          later(p.success, result);
          later(p.complete, result);
        })
        .catch((err) => {
          entry.status = 0;
          const result = { errMsg: `request:fail ${(err.cause && err.cause.code) || err.message}` };
          later(p.fail, result);
          later(p.complete, result);
        });
      return { abort() {} };
    },

    uploadFile(params) {
      calls.uploadFile += 1;
      const p = params || {};
      const header = Object.assign({}, p.header);
      const entry = { api: 'uploadFile', method: 'POST', url: p.url, header, name: p.name };
      log.push(entry);
      fs.promises
        .readFile(p.filePath)
        .then((bytes) => {
          const form = new FormData();
          for (const [k, v] of Object.entries(p.formData || {})) form.append(k, String(v));
          const type = TYPES[path.extname(p.filePath).toLowerCase()] || 'application/octet-stream';
          form.append(p.name, new Blob([bytes], { type }), path.basename(p.filePath));
          return fetch(p.url, { method: 'POST', headers: Object.assign({ Referer: referer }, header), body: form });
        })
        .then(async (res) => {
          const text = await res.text();
          entry.status = res.status;
          entry.data = text;
          // wx.uploadFile does not parse: data is the body as a string.
          const result = { data: text, statusCode: res.status, errMsg: 'uploadFile:ok' };
          later(p.success, result);
          later(p.complete, result);
        })
        .catch((err) => {
          entry.status = 0;
          const result = { errMsg: `uploadFile:fail ${(err.cause && err.cause.code) || err.message}` };
          later(p.fail, result);
          later(p.complete, result);
        });
      return { abort() {} };
    },

    getUserProfile(params) {
      calls.getUserProfile += 1;
      const p = params || {};
      const userInfo = Object.assign({ language: o.language || 'zh_CN', country: 'CN' }, o.profile);
      mockPost(o.mockUrl, '/mock/encrypt', { openId: o.openId, userInfo }).then(
        ({ encryptedData, iv }) => {
          const res = { userInfo, encryptedData, iv, errMsg: 'getUserProfile:ok' };
          later(p.success, res);
          later(p.complete, res);
        },
        (err) => {
          later(p.fail, { errMsg: `getUserProfile:fail ${err.message}` });
        }
      );
    },

    getStorageSync(key) {
      return o.storage.has(key) ? JSON.parse(o.storage.get(key)) : '';
    },
    setStorageSync(key, value) {
      o.storage.set(key, JSON.stringify(value));
    },
    removeStorageSync(key) {
      o.storage.delete(key);
    },

    /** Requests (wx.request and wx.uploadFile) whose URL contains `part`. */
    requestsTo(part) {
      return log.filter((e) => e.url.indexOf(part) >= 0);
    }
  };
  if (o.language !== null) fake.getAppBaseInfo = () => ({ language: o.language, SDKVersion: '3.3.4' });
  if (o.systemLanguage !== null) fake.getSystemInfoSync = () => ({ language: o.systemLanguage, SDKVersion: '3.3.4' });
  return fake;
}

/** The callback-style `wx.getUserProfile` as a Promise. */
function getUserProfile(fake) {
  return new Promise((resolve, reject) => {
    fake.getUserProfile({ desc: 'test', success: resolve, fail: (e) => reject(new Error(e.errMsg)) });
  });
}

module.exports = { createFakeWx, mockPost, getUserProfile };
