// The real wxlogin binary and its mock WeChat (`wxlogin mock-wechat`), each on port 0, for the
// helper's tests. Helper module, no tests of its own (node --test runs every .js under test/,
// so this file shows up as one empty, passing file).
//
// Both processes log JSON (log.format = json) to stderr; the port each bound is read from
// there: the server's "wxlogin listening" line, the mock's poem "listening" line
// (`socket://127.0.0.1:PORT`; wxlogin's own line for the mock repeats the configured address,
// port 0). Every process started here is killed when the test file ends, and with SIGKILL
// should the test process exit without cleaning up.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.WXLOGIN_BIN || path.join(REPO, 'target', 'debug', 'wxlogin');
/** The app id both the mock and the server use (wxlogin's default mock app). */
const APP_ID = 'wx0000000000000000';

const running = new Set();
process.once('exit', () => {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch (e) {
      // already gone
    }
  }
});

/** The environment of a child: ours without any wxlogin setting or log filter of the caller. */
function childEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('WXLOGIN') || k === 'RUST_LOG') continue;
    env[k] = v;
  }
  Object.assign(env, { WXLOGIN__LOG__FORMAT: 'json', WXLOGIN__LOG__FILTER: 'info' }, extra);
  // A null value removes a variable (the embedded default: no WeChat settings at all).
  for (const k of Object.keys(env)) if (env[k] === null) delete env[k];
  return env;
}

/** A listening port in one JSON log line, or null. */
function boundPort(line, wanted) {
  let entry;
  try {
    entry = JSON.parse(line);
  } catch (e) {
    return null;
  }
  const fields = entry && entry.fields;
  if (!fields || !wanted(fields.message || '') || typeof fields.addr !== 'string') return null;
  const m = /:(\d+)$/.exec(fields.addr);
  const port = m ? Number(m[1]) : 0;
  return port > 0 ? port : null;
}

/** Spawns `args` and resolves `{ child, url, logs }` once its log names the port it bound. */
function start(name, args, env, cwd, wanted) {
  if (!fs.existsSync(BIN)) {
    throw new Error(
      `wxlogin binary not found at ${BIN}: run \`cargo build -p wxlogin-server --bin wxlogin\` ` +
        'or set WXLOGIN_BIN'
    );
  }
  const child = spawn(BIN, args, { cwd, env: childEnv(env), stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  const logs = [];
  return new Promise((resolve, reject) => {
    let pending = '';
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`${name} did not report its port within 20 s:\n${logs.join('\n')}`));
    }, 20000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        logs.push(line);
        if (logs.length > 500) logs.shift();
        const port = settled ? null : boundPort(line, wanted);
        if (port) {
          settled = true;
          clearTimeout(timer);
          resolve({ child, url: `http://127.0.0.1:${port}`, logs });
        }
      }
    });
    child.once('exit', (code, signal) => {
      running.delete(child);
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code || signal}) before listening:\n${logs.join('\n')}`));
      }
    });
    child.once('error', (err) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(err);
      }
    });
  });
}

function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(kill);
      running.delete(child);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * The mock WeChat and one server against it, in a fresh temporary directory. `server(env)`
 * starts a further server on the same mock (its own database), e.g. with a short session
 * lifetime; a variable set to null is left out (`WXLOGIN__WECHAT__MODE: null` and the other
 * WeChat keys: the embedded default with its in-process mock at /mock). `close()` stops them
 * all and removes the directory.
 */
async function startStack() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-miniprogram-'));
  const children = [];
  const mock = await start(
    'wxlogin mock-wechat',
    ['mock-wechat', '--addr', '127.0.0.1:0', '--app-id', APP_ID],
    {},
    dir,
    (message) => message === 'listening'
  );
  children.push(mock.child);
  let servers = 0;
  async function server(env) {
    servers += 1;
    const db = path.join(dir, `wxlogin-${servers}.db`);
    const s = await start(
      'wxlogin',
      [],
      Object.assign(
        {
          WXLOGIN__SERVER__ADDR: '127.0.0.1:0',
          WXLOGIN__DATABASE__URL: `sqlite://${db}?mode=rwc`,
          WXLOGIN__WECHAT__MODE: 'http',
          WXLOGIN__WECHAT__BASE_URL: mock.url,
          WXLOGIN__WECHAT__APP_ID: APP_ID,
          WXLOGIN__WECHAT__APP_SECRET: 'miniprogram-test-secret'
        },
        env
      ),
      dir,
      (message) => message === 'wxlogin listening'
    );
    children.push(s.child);
    return s;
  }
  let main;
  try {
    main = await server({});
  } catch (e) {
    await Promise.all(children.map(stop));
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    mockUrl: mock.url,
    serverUrl: main.url,
    serverLogs: main.logs,
    server,
    async close() {
      await Promise.all(children.map(stop));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

/**
 * The `device` (a fake wx for one openid, talking to the stack's mock WeChat) and `client`
 * (a wxlogin client of that device, on the stack's server) of a test file; `current` gives
 * the stack, which the file's `before` starts.
 */
function makers(current) {
  const { createFakeWx } = require('./fake-wx.js');
  const { createClient } = require('../wxlogin.js');
  return {
    device: (openId, extra) =>
      createFakeWx(Object.assign({ mockUrl: current().mockUrl, openId }, extra)),
    client: (wx, extra) => createClient(Object.assign({ baseUrl: current().serverUrl, wx }, extra)),
  };
}

/** The rejection of `promise` (fails the test if it resolves). */
async function rejection(promise) {
  const assert = require('node:assert/strict');
  const outcome = await promise.then(
    (value) => ({ value }),
    (error) => ({ error })
  );
  assert.ok(outcome.error, `expected a rejection, got ${JSON.stringify(outcome.value)}`);
  return outcome.error;
}

module.exports = { startStack, makers, rejection, APP_ID, BIN, REPO };
