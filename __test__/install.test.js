'use strict'
// Installing zerowire as a consumer does: the main package and this platform's prebuilt
// package, both as tarballs, into a scratch project whose PATH has no cargo; then require it
// and do a round trip. With npm, npm --ignore-scripts and pnpm (from the npm registry).
//
// The platform tarball is dist/zerowire-<platform>-<version>.tgz, made by
// `npm run pack:platform` (a release build); without it these tests are skipped, unless
// ZEROWIRE_REQUIRE_PREBUILT=1 (CI) makes that a failure. The main tarball is packed here.
// The platform packages are not on the registry yet, so the scratch project's overrides
// stand in for it: each optional dependency with a tarball in dist/ resolves to that tarball
// (npm then installs only the one whose os, cpu and libc match), the others are looked up on
// the registry like any missing optional package, and skipped.

const { test, before, after } = require('node:test')
const assert = require('node:assert')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const PKG = require('../package.json')
const DIST = path.join(ROOT, 'dist')
const PNPM = 'pnpm@10.34.8'

function platformKey () {
  const { platform, arch } = process
  if (platform !== 'linux') return `${platform}-${arch}`
  return `linux-${arch}-${process.report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl'}`
}

const PLATFORM_PKG = `zerowire-${platformKey()}`
const PLATFORM_TGZ = path.join(DIST, `${PLATFORM_PKG}-${PKG.version}.tgz`)
const missing = !fs.existsSync(PLATFORM_TGZ)
if (missing && process.env.ZEROWIRE_REQUIRE_PREBUILT === '1') {
  throw new Error(`${PLATFORM_TGZ} is missing: run npm run pack:platform first`)
}
const skip = missing && `no ${path.relative(ROOT, PLATFORM_TGZ)} (npm run pack:platform makes it)`

let scratch, bin, mainTgz, env

function run (cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, timeout: 300_000, ...opts })
  if (r.error) throw r.error
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`)
  }
  return r
}

function dirSize (dir) {
  let total = 0
  const seen = new Set()
  const walk = (p) => {
    const st = fs.lstatSync(p)
    // pnpm links one copy of each file from its store into several places: count it once.
    const id = `${st.dev}:${st.ino}`
    if (seen.has(id)) return
    seen.add(id)
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e))
    else total += st.size
  }
  walk(dir)
  return total
}

before(() => {
  if (skip) return
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'zw-install-'))
  // A PATH of exactly what an install needs, so that no cargo (or rustc) can be found.
  bin = path.join(scratch, 'bin')
  fs.mkdirSync(bin)
  const which = (name) => spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim()
  fs.symlinkSync(process.execPath, path.join(bin, 'node'))
  for (const tool of ['npm', 'npx', 'sh']) fs.symlinkSync(fs.realpathSync(which(tool)), path.join(bin, tool))
  env = {
    ...process.env,
    PATH: bin,
    npm_config_cache: path.join(os.homedir(), '.npm'),
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
  }
  for (const k of Object.keys(env)) if (/^(npm_(package|lifecycle)_|INIT_CWD$)/.test(k)) delete env[k]
  for (const tool of ['cargo', 'rustc']) {
    const found = env.PATH.split(path.delimiter).filter((d) => fs.existsSync(path.join(d, tool)))
    assert.deepStrictEqual(found, [], `${tool} is reachable on the scratch PATH`)
  }
  const packed = run('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: ROOT })
  mainTgz = path.join(scratch, JSON.parse(packed.stdout)[0].filename)
})

after(() => {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true })
})

// The scratch app: zerowire from its tarball, the platform packages from dist/.
function makeProject (name) {
  const dir = path.join(scratch, name)
  fs.mkdirSync(dir)
  const overrides = {}
  // The packed package.json lists these as optionalDependencies (scripts/optional-deps.js);
  // without that list npm would install none of them, and the tests below fail.
  const platformDeps = fs.readdirSync(path.join(ROOT, 'npm'))
    .map((d) => require(path.join(ROOT, 'npm', d, 'package.json')).name)
  for (const dep of platformDeps) {
    const tgz = path.join(DIST, `${dep}-${PKG.version}.tgz`)
    if (fs.existsSync(tgz)) overrides[dep] = `file:${tgz}`
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({
    name: `zw-scratch-${name}`,
    private: true,
    dependencies: { zerowire: `file:${mainTgz}` },
    overrides,
    // pnpm installs a file: package whatever its os and cpu (from the registry it would skip
    // the others), so it gets this platform's only; the others it cannot find, and skips.
    pnpm: { overrides: { [PLATFORM_PKG]: overrides[PLATFORM_PKG] } },
  }, null, 2))
  return dir
}

function installAndRun (t, name, install) {
  const dir = makeProject(name)
  const t0 = process.hrtime.bigint()
  install(dir)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const size = dirSize(path.join(dir, 'node_modules'))
  const line = `${name}: installed in ${seconds.toFixed(1)} s, node_modules ${(size / 1e6).toFixed(1)} MB`
  t.diagnostic(line)
  // Nothing was compiled, and cargo's output is nowhere.
  assert.ok(!fs.existsSync(path.join(dir, 'node_modules', 'zerowire', 'target')), 'a target/ in node_modules/zerowire')
  assert.ok(!fs.existsSync(path.join(dir, 'node_modules', 'zerowire', 'zerowire.node')), 'zerowire.node was built')
  assert.ok(size < 20e6, line)
  fs.copyFileSync(path.join(__dirname, 'installed-app.js'), path.join(dir, 'app.js'))
  const r = run('node', ['app.js'], { cwd: dir, timeout: 60_000 })
  const addon = /: addon (.*)$/m.exec(r.stdout)[1]
  assert.match(addon, new RegExp(`node_modules[\\\\/].*${PLATFORM_PKG}[\\\\/]zerowire\\.${platformKey()}\\.node$`))
  assert.match(r.stdout, /^ipc round trip ok$/m)
  assert.match(r.stdout, /^tcp round trip ok$/m)
}

test('npm install: the prebuilt addon, no cargo on PATH', { skip }, (t) => {
  installAndRun(t, 'npm', (dir) => run('npm', ['install', '--no-package-lock'], { cwd: dir }))
})

test('npm install --ignore-scripts: the same', { skip }, (t) => {
  installAndRun(t, 'npm-ignore-scripts', (dir) => run('npm', ['install', '--no-package-lock', '--ignore-scripts'], { cwd: dir }))
})

test(`pnpm install (${PNPM}, as npm exec fetches it)`, { skip }, (t) => {
  // Fetched before the clock starts: the install is what is timed, not getting pnpm.
  run('npm', ['exec', '--yes', `--package=${PNPM}`, '--', 'pnpm', '--version'], { cwd: scratch })
  installAndRun(t, 'pnpm', (dir) => run('npm', ['exec', '--yes', `--package=${PNPM}`, '--', 'pnpm', 'install',
    '--store-dir', path.join(scratch, 'pnpm-store')], { cwd: dir }))
})

test('without the platform package, require throws one error naming the platform and both fixes', { skip }, (t) => {
  const dir = makeProject('no-optional')
  run('npm', ['install', '--no-package-lock', '--omit=optional'], { cwd: dir })
  assert.ok(!fs.existsSync(path.join(dir, 'node_modules', PLATFORM_PKG)))
  const r = spawnSync('node', ['-e', `
    try { require('zerowire'); console.log('loaded') } catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })) }`],
  { cwd: dir, env, encoding: 'utf8' })
  const { code, message } = JSON.parse(r.stdout)
  assert.strictEqual(code, 'ERR_ZEROWIRE_NO_ADDON')
  assert.ok(message.includes(platformKey()), message)
  assert.ok(message.includes(PLATFORM_PKG), message)
  assert.match(message, /optional dependencies/)
  assert.match(message, /npm run build/)
})

// A prebuilt addon linked against a newer glibc than the system's: a real one, which the
// dynamic loader refuses. It is linked against a stand-in libc.so.6 that defines a symbol at
// version GLIBC_9.99, so loading it against the real libc fails the way a package built on a
// newer system does on an older one.
const glibc = process.platform === 'linux' && platformKey().endsWith('-gnu')
const cc = glibc && spawnSync('cc', ['--version']).status === 0
test('a prebuilt addon that needs a newer glibc: require throws one error naming both glibcs and the fix', { skip: !cc && 'needs Linux with glibc and a C compiler' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zerowire-glibc-'))
  try {
    const main = path.join(dir, 'zerowire')
    const prebuilt = path.join(main, 'node_modules', PLATFORM_PKG)
    const stub = path.join(dir, 'stub')
    fs.mkdirSync(prebuilt, { recursive: true })
    fs.mkdirSync(stub)
    for (const f of ['binding.js', 'package.json']) fs.copyFileSync(path.join(ROOT, f), path.join(main, f))
    fs.writeFileSync(path.join(prebuilt, 'package.json'), JSON.stringify({ name: PLATFORM_PKG, main: 'zerowire.node' }))
    fs.writeFileSync(path.join(stub, 'stub.c'), 'int zw_newer_symbol(void) { return 1; }\n')
    fs.writeFileSync(path.join(stub, 'v.map'), 'GLIBC_9.99 { global: zw_newer_symbol; local: *; };\n')
    fs.writeFileSync(path.join(stub, 'addon.c'), 'extern int zw_newer_symbol(void);\nint napi_register_module_v1(void) { return zw_newer_symbol(); }\n')
    run('cc', ['-shared', '-fPIC', '-o', path.join(stub, 'libc.so.6'), '-Wl,--version-script=' + path.join(stub, 'v.map'), '-Wl,-soname,libc.so.6', path.join(stub, 'stub.c')], { env: process.env })
    run('cc', ['-shared', '-fPIC', '-o', path.join(prebuilt, 'zerowire.node'), path.join(stub, 'addon.c'), '-L' + stub, '-l:libc.so.6'], { env: process.env })
    const r = spawnSync(process.execPath, ['-e', `
      try { require(${JSON.stringify(path.join(main, 'binding.js'))}); console.log('{}') } catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message, cause: err.cause && err.cause.code })) }`],
    { encoding: 'utf8' })
    const { code, message, cause } = JSON.parse(r.stdout)
    assert.strictEqual(code, 'ERR_ZEROWIRE_NO_ADDON', r.stdout + r.stderr)
    assert.strictEqual(cause, 'ERR_DLOPEN_FAILED')
    assert.ok(message.includes(`${PLATFORM_PKG} needs glibc 9.99 or later`), message)
    assert.ok(message.includes(`this system has glibc ${process.report.getReport().header.glibcVersionRuntime}`), message)
    assert.match(message, /npm run build/)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
