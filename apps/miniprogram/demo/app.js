// The demo's client: one for the whole mini-program, on the App.
//
// A mini-program can only require files inside its own folder, so the helper is copied to
// utils/wxlogin.js; it must stay identical to apps/miniprogram/wxlogin.js (a test checks).
var wxlogin = require('./utils/wxlogin.js');
var mock = require('./utils/mock-wechat.js');

// A local wxlogin (`cargo run -p wxlogin-server` listens on 127.0.0.1:8080). In DevTools, turn
// off the domain check (Details → Local settings → "Do not verify valid domain names…").
var BASE_URL = 'http://127.0.0.1:8080';
// true: that wxlogin's built-in mock WeChat (no AppSecret configured). false: a wxlogin
// configured with this mini-program's AppID and AppSecret (set "appid" in project.config.json).
var MOCK_WECHAT = true;

App({
  globalData: {
    baseUrl: BASE_URL,
    mockWeChat: MOCK_WECHAT
  },

  onLaunch: function () {
    this.client = wxlogin.createClient({
      baseUrl: BASE_URL,
      wx: MOCK_WECHAT ? mock.withMockLogin(wx, BASE_URL) : wx,
      // DevTools' tourist app id in WeChat's Referer names no app the local server serves:
      // name the mock's app explicitly.
      appId: MOCK_WECHAT ? wxlogin.MOCK_APP_ID : undefined
    });
    this.client.ensureLogin().then(null, function (err) {
      console.warn('wxlogin: login failed', err.status, err.error, err.message);
    });
  }
});
