// The files themselves: the demo's copy of the helper, the helper's conservative syntax, the
// typings against the client, the package and the demo's configuration.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createClient } = require('../wxlogin.js');

const ROOT = path.join(__dirname, '..');
const read = (file) => fs.readFileSync(path.join(ROOT, file));
const json = (file) => JSON.parse(read(file).toString('utf8'));

test('demo/utils/wxlogin.js is byte-identical to wxlogin.js', () => {
  const helper = read('wxlogin.js');
  const copy = read('demo/utils/wxlogin.js');
  assert.ok(
    helper.equals(copy),
    'demo/utils/wxlogin.js differs: cp apps/miniprogram/wxlogin.js apps/miniprogram/demo/utils/wxlogin.js'
  );
});

test('wxlogin.js keeps to syntax base library 2.x runs as it is', () => {
  // Comments out (a rough cut: it can only hide code from the check, never add any).
  const code = read('wxlogin.js')
    .toString('utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '');
  for (const [what, pattern] of [
    ['optional chaining', /\?\.(?!\d)/],
    ['nullish coalescing', /\?\?/],
    ['async/await', /\b(async|await)\b/],
    ['classes', /\bclass\b/],
    ['template literals', /`/],
    ['Object.assign', /Object\.assign/],
    ['Promise#finally', /\.finally\s*\(/],
    ['ES modules', /^\s*(import|export)\b/m]
  ]) {
    assert.doesNotMatch(code, pattern, `wxlogin.js uses ${what}`);
  }
  assert.match(code, /module\.exports\s*=/);
});

test('wxlogin.d.ts declares every method and getter of the client', () => {
  const dts = read('wxlogin.d.ts').toString('utf8');
  const client = createClient({ baseUrl: 'https://example.com', wx: {} });
  const names = Object.keys(client);
  assert.ok(names.length >= 14, names.join(' '));
  const body = /export interface Client \{([\s\S]*?)\n\}/.exec(dts);
  assert.ok(body, 'interface Client');
  for (const name of names) {
    assert.match(body[1], new RegExp(`\\n  (readonly )?${name}\\b`), `Client.${name} in wxlogin.d.ts`);
  }
  for (const name of Object.keys(require('../wxlogin.js'))) {
    assert.match(dts, new RegExp(`export (function|const) ${name}\\b`), `${name} in wxlogin.d.ts`);
  }
});

test('package.json can be published as is', () => {
  const pkg = json('package.json');
  assert.equal(pkg.name, 'wxlogin-miniprogram');
  assert.equal(pkg.main, 'wxlogin.js');
  assert.equal(pkg.types, 'wxlogin.d.ts');
  assert.equal(pkg.license, 'MIT');
  assert.equal(pkg.scripts.test, 'node --test test/');
  assert.equal(pkg.dependencies, undefined);
  assert.equal(pkg.devDependencies, undefined);
  for (const file of pkg.files) assert.ok(fs.existsSync(path.join(ROOT, file)), file);
  assert.ok(pkg.files.includes('wxlogin.js') && pkg.files.includes('wxlogin.d.ts'));
});

test('the demo is a complete mini-program project', () => {
  const app = json('demo/app.json');
  assert.ok(app.pages.length >= 1);
  for (const page of app.pages) {
    for (const ext of ['js', 'json', 'wxml', 'wxss']) {
      assert.ok(fs.existsSync(path.join(ROOT, 'demo', `${page}.${ext}`)), `${page}.${ext}`);
    }
  }
  assert.ok(fs.existsSync(path.join(ROOT, 'demo', app.sitemapLocation)));
  json('demo/sitemap.json');
  const project = json('demo/project.config.json');
  assert.equal(project.setting.urlCheck, false);
  assert.equal(project.compileType, 'miniprogram');
  assert.ok(project.appid);

  const wxml = read('demo/pages/index/index.wxml').toString('utf8');
  assert.match(wxml, /open-type="chooseAvatar" bind:chooseavatar="onChooseAvatar"/);
  assert.match(wxml, /<input type="nickname"[^>]*bind:blur="onNickname"/);
  assert.match(wxml, /open-type="getPhoneNumber" bindgetphonenumber="onPhone"/);
  assert.match(wxml, /bindtap="onClassicProfile"/);
});
