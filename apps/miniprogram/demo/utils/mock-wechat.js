// For a local wxlogin with its built-in mock WeChat only (the default of
// `cargo run -p wxlogin-server`: no AppSecret configured, control API at /mock).
//
// The mock knows only the codes and keys it minted itself: a code from DevTools' own wx.login,
// a getPhoneNumber code, or data getUserProfile encrypted means nothing to it. So in mock mode
// the demo gets them from the mock's control API instead, for one fixed openid, and otherwise
// goes through exactly the same calls. With real WeChat (app.js: MOCK_WECHAT = false) none of
// this is used.
var OPEN_ID = 'o-demo-devtools';

function post(baseUrl, path, data) {
  return new Promise(function (resolve, reject) {
    wx.request({
      url: baseUrl + '/mock' + path,
      method: 'POST',
      data: data,
      header: { 'content-type': 'application/json' },
      success: function (res) {
        if (res.statusCode === 200) resolve(res.data);
        else reject(new Error('mock ' + path + ': HTTP ' + res.statusCode));
      },
      fail: function (err) {
        reject(new Error(err.errMsg));
      }
    });
  });
}

/** `wxApi` whose login mints a code from the mock (rotating the mock user's key, as wx.login may). */
function withMockLogin(wxApi, baseUrl) {
  var shim = {};
  var names = ['request', 'uploadFile', 'getStorageSync', 'setStorageSync', 'removeStorageSync',
    'getAppBaseInfo', 'getSystemInfoSync'];
  for (var i = 0; i < names.length; i++) {
    if (typeof wxApi[names[i]] === 'function') shim[names[i]] = wxApi[names[i]].bind(wxApi);
  }
  shim.login = function (options) {
    post(baseUrl, '/codes', { openId: OPEN_ID }).then(
      function (res) {
        if (options.success) options.success({ code: res.code, errMsg: 'login:ok' });
      },
      function (err) {
        if (options.fail) options.fail({ errMsg: 'login:fail ' + err.message });
      }
    );
  };
  return shim;
}

/** A getPhoneNumber code for the mock user. */
function phoneCode(baseUrl) {
  return post(baseUrl, '/phone-codes', { openId: OPEN_ID, phoneNumber: '+8613800138000' }).then(
    function (res) {
      return res.code;
    }
  );
}

/** getUserProfile's data, encrypted by the mock with the user's current session key. */
function userProfile(baseUrl, userInfo) {
  return post(baseUrl, '/encrypt', { openId: OPEN_ID, userInfo: userInfo });
}

module.exports = {
  OPEN_ID: OPEN_ID,
  withMockLogin: withMockLogin,
  phoneCode: phoneCode,
  userProfile: userProfile
};
