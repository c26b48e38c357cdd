// The demo mini-program, run in Node as DevTools would run it against a local wxlogin in its
// embedded default (the in-process mock WeChat at /mock, app id wx0000000000000000), with
// DevTools' tourist app id in WeChat's Referer. App/Page/getApp are stubs; `wx` is the fake.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const { startStack } = require('./stack.js');
const { createFakeWx } = require('./fake-wx.js');

const DEMO = path.join(__dirname, '..', 'demo');

let stack;
let embedded;
before(async () => {
  stack = await startStack();
  embedded = await stack.server({
    WXLOGIN__WECHAT__MODE: null,
    WXLOGIN__WECHAT__BASE_URL: null,
    WXLOGIN__WECHAT__APP_ID: null,
    WXLOGIN__WECHAT__APP_SECRET: null
  });
});
after(async () => {
  if (stack) await stack.close();
  for (const name of ['wx', 'App', 'Page', 'getApp']) delete global[name];
});

/** Loads a demo file as the mini-program would, with `edit` applied to its source. */
function load(file, edit) {
  const filename = path.join(DEMO, file);
  const m = new Module(filename, module);
  m.filename = filename;
  m.paths = Module._nodeModulePaths(path.dirname(filename));
  m._compile(edit(fs.readFileSync(filename, 'utf8')), filename);
  return m.exports;
}

async function until(check, what) {
  const deadline = Date.now() + 10000;
  while (!check()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('the demo logs in, sets the nickname, binds the phone and submits the classic profile', async () => {
  const wx = createFakeWx({ mockUrl: embedded.url, openId: 'o-demo-devtools', appId: 'touristappid' });
  let appConfig;
  let pageConfig;
  global.wx = wx;
  global.App = (config) => {
    appConfig = config;
  };
  global.getApp = () => appConfig;
  global.Page = (config) => {
    pageConfig = config;
  };

  const base = "var BASE_URL = 'http://127.0.0.1:8080';";
  load('app.js', (src) => {
    assert.ok(src.includes(base), 'app.js names the README default address');
    return src.replace(base, `var BASE_URL = '${embedded.url}';`);
  });
  appConfig.onLaunch();
  load('pages/index/index.js', (src) => src);

  const page = Object.assign({}, pageConfig, {
    data: Object.assign({}, pageConfig.data),
    setData(d) {
      Object.assign(this.data, d);
    }
  });
  const act = async (what, run) => {
    page.data.status = '';
    run();
    await until(() => page.data.status !== '', what);
    assert.equal(page.data.status, 'ok', what);
  };

  await act('onShow', () => page.onShow());
  assert.equal(page.data.user.openId, 'o-demo-devtools');
  // Every request of the helper named the mock's app over DevTools' Referer.
  const helper = wx.log.filter((e) => e.url.indexOf('/mock/') < 0);
  assert.ok(helper.length >= 1);
  for (const e of helper) assert.equal(e.header['X-WX-AppId'], 'wx0000000000000000', e.url);

  await act('onNickname', () => page.onNickname({ detail: { value: ' Demo ' } }));
  assert.equal(page.data.user.nickName, 'Demo');

  await act('onPhone', () => page.onPhone({ detail: { code: 'from-devtools', errMsg: 'getPhoneNumber:ok' } }));
  assert.equal(page.data.user.phoneNumber, '+8613800138000');

  await act('onClassicProfile', () => page.onClassicProfile());
  assert.equal(page.data.user.nickName, 'Alice');
  assert.equal(wx.calls.getUserProfile, 1);

  page.data.status = '';
  page.onLogout();
  await until(() => page.data.status !== '', 'onLogout');
  assert.equal(page.data.status, 'logged out');
  assert.equal(wx.storage.size, 0);
});
