/*!
 * wxlogin-miniprogram: the mini-program side of wxlogin, a WeChat mini-program login backend.
 *
 * CommonJS, no dependencies, no build step: `require` it as it is from a mini-program (copy it
 * inside the mini-program's own folder, e.g. utils/wxlogin.js) or from Node with a fake `wx`.
 * Written for WeChat base library 2.x: var, functions and Promise chains only; no optional
 * chaining, no nullish coalescing, no classes, no Object.assign, no Promise#finally.
 *
 * Typings and the contract of every method: wxlogin.d.ts.
 */
'use strict';

var DEFAULT_STORAGE_KEY = 'wxlogin.session';

/** A `wx.login` code lives 5 minutes; a held one is used for at most 4.5 (slack for the trip). */
var HELD_CODE_MS = 4.5 * 60 * 1000;

/** A token this close to its `expiresAt` counts as expired: it would die on the way. */
var EXPIRY_SLACK_MS = 10 * 1000;

/** The 401 error codes after which one new login is worth it. */
var RELOGIN_ERRORS = { token_expired: true, invalid_token: true };

/** wxlogin's default `wechat.app_id` (its built-in mock WeChat's app). */
var MOCK_APP_ID = 'wx0000000000000000';

function extend(target) {
  for (var i = 1; i < arguments.length; i++) {
    var source = arguments[i];
    if (source) {
      for (var k in source) {
        if (Object.prototype.hasOwnProperty.call(source, k)) target[k] = source[k];
      }
    }
  }
  return target;
}

function hasHeader(header, name) {
  var lower = name.toLowerCase();
  for (var k in header) {
    if (Object.prototype.hasOwnProperty.call(header, k) && k.toLowerCase() === lower) return true;
  }
  return false;
}

/** Every rejection of this module: an Error carrying the server's `{status, error, message}`. */
function fail(status, error, message) {
  var e = new Error(message || error);
  e.name = 'WxLoginError';
  e.status = status;
  e.error = error;
  return e;
}

function isObject(v) {
  return v !== null && typeof v === 'object';
}

function parseMaybeJson(data) {
  if (typeof data !== 'string') return data;
  try {
    return JSON.parse(data);
  } catch (e) {
    return data;
  }
}

/** The error an HTTP answer that is not 2xx stands for. */
function httpError(res) {
  var body = parseMaybeJson(res.data);
  if (isObject(body) && typeof body.error === 'string') {
    return fail(
      typeof body.status === 'number' ? body.status : res.statusCode,
      body.error,
      typeof body.message === 'string' ? body.message : body.error
    );
  }
  return fail(res.statusCode, 'http_error', 'HTTP ' + res.statusCode);
}

function ok(res) {
  return res.statusCode >= 200 && res.statusCode < 300;
}

function wantsRelogin(res) {
  if (res.statusCode !== 401) return false;
  var body = parseMaybeJson(res.data);
  return isObject(body) && RELOGIN_ERRORS[body.error] === true;
}

function createClient(options) {
  options = options || {};
  if (typeof options.baseUrl !== 'string' || !/^https?:\/\//i.test(options.baseUrl)) {
    throw new TypeError('wxlogin: createClient needs baseUrl, an http(s) URL');
  }
  /* global wx */
  var wxApi = options.wx || (typeof wx !== 'undefined' ? wx : null);
  if (!wxApi) throw new TypeError('wxlogin: no wx object (pass options.wx)');
  var baseUrl = options.baseUrl.replace(/\/+$/, '');
  var storageKey = options.storageKey || DEFAULT_STORAGE_KEY;
  var api = options.api || 'v1';
  if (api !== 'v1' && api !== 'classic') {
    throw new TypeError('wxlogin: api must be "v1" or "classic"');
  }
  var appId = options.appId || null;
  var now = typeof options.now === 'function' ? options.now : function () {
    return Date.now();
  };

  // The session in memory; null: none, so storage is read (another client may have stored one).
  var session = null;
  var loginInFlight = null;
  var prepareInFlight = null;
  // The code prepare() got from wx.login: { code, until }.
  var held = null;
  // True while the server's session key is WeChat's newest: this client logged in (or handed
  // the server a fresh code) and called wx.login no more since.
  var keyCurrent = false;
  var lang;

  // ---- storage ----

  function load() {
    if (!session) {
      var stored = null;
      try {
        stored = wxApi.getStorageSync(storageKey);
      } catch (e) {
        stored = null;
      }
      stored = parseMaybeJson(stored);
      session = isObject(stored) && typeof stored.token === 'string' && stored.token ? stored : null;
    }
    return session;
  }

  function save(next) {
    session = next;
    try {
      wxApi.setStorageSync(storageKey, next);
    } catch (e) {
      // Storage full or unavailable: the session still lives in memory.
    }
  }

  function forget() {
    session = null;
    held = null;
    keyCurrent = false;
    try {
      wxApi.removeStorageSync(storageKey);
    } catch (e) {
      // Nothing stored, or storage unavailable.
    }
  }

  function valid(s) {
    if (!s || !s.token) return false;
    if (!s.expiresAt) return true;
    var t = Date.parse(s.expiresAt);
    return isNaN(t) || t - EXPIRY_SLACK_MS > now();
  }

  function copy(s, extra) {
    return extend({}, s, extra);
  }

  /** A user reply (`{status, profileComplete, user}`) refreshes the stored user. */
  function keepUser(body) {
    var s = load();
    if (s && isObject(body) && isObject(body.user)) {
      var next = copy(s, { user: body.user });
      if (typeof body.profileComplete === 'boolean') next.profileComplete = body.profileComplete;
      save(next);
    }
    return body;
  }

  // ---- wx calls ----

  function language() {
    if (lang !== undefined) return lang;
    var value = null;
    try {
      if (typeof wxApi.getAppBaseInfo === 'function') value = (wxApi.getAppBaseInfo() || {}).language;
    } catch (e) {
      value = null;
    }
    if (!value) {
      try {
        if (typeof wxApi.getSystemInfoSync === 'function') {
          value = (wxApi.getSystemInfoSync() || {}).language;
        }
      } catch (e) {
        value = null;
      }
    }
    // WeChat says zh_CN, zh_TW, en; HTTP says zh-CN.
    lang = typeof value === 'string' && value ? value.replace(/_/g, '-') : null;
    return lang;
  }

  /** The headers of a request; `token` and the app id only go to our own server. */
  function headers(extra, token, foreign) {
    var h = extend({}, extra);
    var l = language();
    if (l && !hasHeader(h, 'Accept-Language')) h['Accept-Language'] = l;
    if (!foreign && appId && !hasHeader(h, 'X-WX-AppId')) h['X-WX-AppId'] = appId;
    if (token && !foreign) h.Authorization = 'Bearer ' + token;
    return h;
  }

  function wxLogin() {
    return new Promise(function (resolve, reject) {
      wxApi.login({
        success: function (res) {
          if (res && res.code) resolve(res.code);
          else reject(fail(0, 'login_failed', (res && res.errMsg) || 'wx.login gave no code'));
        },
        fail: function (err) {
          reject(fail(0, 'login_failed', (err && err.errMsg) || 'wx.login failed'));
        }
      });
    });
  }

  /** One wx.request: resolves `{statusCode, data, header}` whatever the status. */
  function send(url, method, data, header) {
    return new Promise(function (resolve, reject) {
      wxApi.request({
        url: url,
        method: method,
        data: data,
        header: header,
        success: function (res) {
          resolve(res);
        },
        fail: function (err) {
          reject(fail(0, 'network_error', (err && err.errMsg) || 'request:fail'));
        }
      });
    });
  }

  function sendJson(path, method, body, token) {
    var h = headers({ 'content-type': 'application/json' }, token);
    return send(baseUrl + path, method, body, h);
  }

  function sendForm(path, body) {
    var h = headers({ 'content-type': 'application/x-www-form-urlencoded' }, null);
    return send(baseUrl + path, 'POST', body, h);
  }

  function bodyOf(res) {
    if (!ok(res)) throw httpError(res);
    return res.data;
  }

  // ---- sessions ----

  /** Exchanges `code` (v1 or classic); the new session, with isNewUser. */
  function exchange(code) {
    var answer = api === 'classic'
      ? sendForm('/onLogin', { code: code })
      : sendJson('/api/v1/login', 'POST', { code: code }, null);
    return answer.then(function (res) {
      var body = parseMaybeJson(bodyOf(res));
      if (!isObject(body) || typeof body.token !== 'string') {
        throw fail(res.statusCode, 'invalid_response', 'the login answer has no token');
      }
      var next = {
        token: body.token,
        expiresAt: body.expiresAt || null,
        user: body.user || null,
        profileComplete: body.profileComplete === true
      };
      save(next);
      return copy(next, { isNewUser: body.isNewUser === true });
    });
  }

  function login() {
    if (loginInFlight) return loginInFlight;
    var started = wxLogin().then(function (code) {
      // This wx.login rotated the key: an older held code (and data made before) is stale,
      // and the key this login hands the server is the newest.
      held = null;
      keyCurrent = false;
      return exchange(code).then(function (s) {
        keyCurrent = true;
        return s;
      });
    });
    loginInFlight = started;
    started.then(
      function () {
        loginInFlight = null;
      },
      function () {
        loginInFlight = null;
      }
    );
    return started;
  }

  function ensureLogin() {
    var s = load();
    if (valid(s)) return Promise.resolve(copy(s));
    return login();
  }

  /**
   * Runs `attempt(token)` (resolving a response) with the session's token; on a 401
   * token_expired/invalid_token, once: with a newer token if another call already got one,
   * else after one new login. The second answer is final: never a loop.
   */
  function authed(attempt) {
    return ensureLogin().then(function (s) {
      var used = s.token;
      return attempt(used).then(function (res) {
        if (!wantsRelogin(res)) return res;
        // Storage first: another client on it (another page's) may hold a newer token.
        if (session && session.token === used) session = null;
        var current = load();
        var next;
        if (current && current.token !== used && valid(current)) {
          next = Promise.resolve(current);
        } else {
          if (current && current.token === used && !loginInFlight) forget();
          next = login();
        }
        return next.then(function (fresh) {
          return attempt(fresh.token);
        });
      });
    });
  }

  function resolveUrl(url) {
    if (typeof url !== 'string' || !url) throw fail(0, 'invalid_request', 'request needs a url');
    if (url.charAt(0) === '/') return baseUrl + url;
    if (/^https?:\/\//i.test(url)) return url;
    throw fail(0, 'invalid_request', 'url must start with "/" or http(s)://');
  }

  /** Only our own server sees the token. */
  function ours(url) {
    if (url.indexOf(baseUrl) !== 0) return false;
    var rest = url.charAt(baseUrl.length);
    return rest === '' || rest === '/' || rest === '?' || rest === '#';
  }

  function request(opts) {
    opts = opts || {};
    var url;
    try {
      url = resolveUrl(opts.url);
    } catch (e) {
      return Promise.reject(e);
    }
    var method = (opts.method || 'GET').toUpperCase();
    if (!ours(url)) {
      return send(url, method, opts.data, headers(opts.header, null, true)).then(bodyOf);
    }
    return authed(function (token) {
      return send(url, method, opts.data, headers(opts.header, token));
    }).then(bodyOf);
  }

  function userCall(path, method, body) {
    return request({ url: path, method: method, data: body }).then(keepUser);
  }

  function upload(filePath, token) {
    return new Promise(function (resolve, reject) {
      wxApi.uploadFile({
        url: baseUrl + '/api/v1/me/avatar',
        filePath: filePath,
        name: 'file',
        header: headers({}, token),
        success: function (res) {
          // uploadFile's data is always a string.
          resolve({ statusCode: res.statusCode, data: parseMaybeJson(res.data), header: res.header });
        },
        fail: function (err) {
          reject(fail(0, 'network_error', (err && err.errMsg) || 'uploadFile:fail'));
        }
      });
    });
  }

  function uploadAvatar(tempFilePath) {
    if (typeof tempFilePath !== 'string' || !tempFilePath) {
      return Promise.reject(fail(0, 'invalid_request', 'uploadAvatar needs a file path'));
    }
    return authed(function (token) {
      return upload(tempFilePath, token);
    }).then(function (res) {
      var body = bodyOf(res);
      if (!isObject(body)) {
        throw fail(res.statusCode, 'invalid_response', 'the avatar answer is not JSON');
      }
      return keepUser(body);
    });
  }

  // ---- encrypted data ----

  function prepare() {
    if (prepareInFlight) return prepareInFlight;
    var started = ensureLogin()
      .then(wxLogin)
      .then(function (code) {
        held = { code: code, until: now() + HELD_CODE_MS };
        keyCurrent = false;
        return { codeExpiresAt: held.until };
      });
    prepareInFlight = started;
    started.then(
      function () {
        prepareInFlight = null;
      },
      function () {
        prepareInFlight = null;
      }
    );
    return started;
  }

  function sendProfile(data, token, code) {
    var body = { encryptedData: data.encryptedData, iv: data.iv };
    // The server checks rawData against signature only as a pair.
    if (data.rawData && data.signature) {
      body.rawData = data.rawData;
      body.signature = data.signature;
    }
    if (code) body.code = code;
    if (api === 'classic') {
      body.token = token;
      return sendForm('/updateUserInfo', body);
    }
    return sendJson('/api/v1/me/profile/encrypted', 'POST', body, token);
  }

  /** Logs in with a code already at hand (the held one): no wx.login. */
  function loginWith(code) {
    return exchange(code).then(function (s) {
      keyCurrent = true;
      return s;
    });
  }

  function submitEncryptedProfile(data) {
    if (!isObject(data) || !data.encryptedData || !data.iv) {
      return Promise.reject(fail(0, 'invalid_request', 'submitEncryptedProfile needs encryptedData and iv'));
    }
    // Nothing here may call wx.login: it could rotate the key the data was encrypted with.
    var code = held;
    held = null; // used once, whatever happens
    var s = load();
    var answer;
    if (code && code.until > now()) {
      var viaLogin = function () {
        // The held code's key is the data's key; logging in with it makes it the session's.
        return loginWith(code.code).then(function (fresh) {
          return sendProfile(data, fresh.token, null);
        });
      };
      if (valid(s)) {
        answer = sendProfile(data, s.token, code.code).then(function (res) {
          // The token is checked before the code is exchanged: on a 401 the code is unspent.
          if (wantsRelogin(res)) return viaLogin();
          if (ok(res) || res.statusCode === 422) keyCurrent = true;
          return res;
        });
      } else {
        answer = viaLogin();
      }
    } else if (code) {
      return Promise.reject(fail(0, 'prepare_expired',
        'the code from prepare() is too old: call prepare() again, then ask for the profile again'));
    } else if (keyCurrent && valid(s)) {
      answer = sendProfile(data, s.token, null);
    } else {
      return Promise.reject(fail(0, 'not_prepared',
        'call prepare() before asking for the profile (the session key may have rotated)'));
    }
    return answer.then(function (res) {
      return keepUser(parseMaybeJson(bodyOf(res)));
    });
  }

  // ---- the rest of /api/v1 ----

  function refresh() {
    return authed(function (token) {
      return sendJson('/api/v1/session/refresh', 'POST', undefined, token);
    }).then(function (res) {
      var body = parseMaybeJson(bodyOf(res));
      if (!isObject(body) || typeof body.token !== 'string') {
        throw fail(res.statusCode, 'invalid_response', 'the refresh answer has no token');
      }
      var next = copy(load() || {}, { token: body.token, expiresAt: body.expiresAt || null });
      save(next);
      return copy(next);
    });
  }

  function logout() {
    var s = load();
    held = null;
    if (!s) {
      forget();
      return Promise.resolve();
    }
    return sendJson('/api/v1/session', 'DELETE', undefined, s.token).then(
      function (res) {
        forget();
        // A 401: the token was dead already, which is what logging out wants.
        if (!ok(res) && res.statusCode !== 401) throw httpError(res);
      },
      function (err) {
        forget();
        throw err;
      }
    );
  }

  return {
    login: login,
    ensureLogin: ensureLogin,
    request: request,
    me: function () {
      return userCall('/api/v1/me', 'GET');
    },
    updateProfile: function (fields) {
      return userCall('/api/v1/me/profile', 'POST', fields || {});
    },
    uploadAvatar: uploadAvatar,
    prepare: prepare,
    submitEncryptedProfile: submitEncryptedProfile,
    bindPhone: function (code) {
      if (typeof code !== 'string' || !code) {
        return Promise.reject(fail(0, 'invalid_request', 'bindPhone needs the getPhoneNumber code'));
      }
      return userCall('/api/v1/me/phone', 'POST', { code: code });
    },
    refresh: refresh,
    logout: logout,
    get user() {
      var s = load();
      return s ? s.user || null : null;
    },
    get token() {
      var s = load();
      return s ? s.token : null;
    },
    get session() {
      var s = load();
      return s ? copy(s) : null;
    }
  };
}

module.exports = {
  createClient: createClient,
  DEFAULT_STORAGE_KEY: DEFAULT_STORAGE_KEY,
  MOCK_APP_ID: MOCK_APP_ID
};
