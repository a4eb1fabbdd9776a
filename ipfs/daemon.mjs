// The dso devnet IPFS node: js-ipfs (ipfs-core) plus its Kubo-compatible RPC API (ipfs-http-server)
// in one process, fully offline.
//
//   node daemon.mjs --repo DIR --port 5002 [--host 127.0.0.1]
//   (or IPFS_PATH / DSO_IPFS_PORT / DSO_IPFS_HOST in the environment)
//
// Why not `jsipfs daemon`: the CLI starts a gateway and gRPC server we do not use, takes ~6 s and
// its `--offline` flag still starts libp2p. Here libp2p is never started (`start: false`), there
// are no bootstrap peers, no swarm addresses and preload is disabled, so nothing leaves the host.
//
// Readiness: once the API listens, one line `dso-ipfs ready <json>` goes to stdout, where the JSON
// carries api (URL), peer id and version. SIGTERM/SIGINT stop the API and the repo (releasing
// repo.lock) and exit 0; a stop that hangs for STOP_TIMEOUT_MS exits 1.

import { parseArgs } from 'node:util'
import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { isIPv4 } from 'node:net'
import { create } from 'ipfs-core'
import { HttpApi } from 'ipfs-http-server'

const STOP_TIMEOUT_MS = 8000
const DEFAULT_PORT = 5002
const DEFAULT_HOST = '127.0.0.1'

function fail (message) {
  console.error(`dso-ipfs: ${message}`)
  process.exit(2)
}

function readOptions () {
  const { values } = parseArgs({
    options: {
      repo: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' }
    }
  })
  const repo = values.repo ?? process.env.IPFS_PATH
  if (!repo) fail('no repo directory: pass --repo DIR or set IPFS_PATH')
  const port = Number(values.port ?? process.env.DSO_IPFS_PORT ?? DEFAULT_PORT)
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`invalid port ${values.port}`)
  const host = values.host ?? process.env.DSO_IPFS_HOST ?? DEFAULT_HOST
  // The multiaddr below is /ip4: a hostname or IPv6 address would be silently misread.
  if (!isIPv4(host)) fail(`--host must be an IPv4 address, got ${host}`)
  return { repo: resolve(repo), port, host }
}

// Applied on every start (ipfs-core merges `config` into the repo's config), so an old repo
// cannot drift back online. Arrays replace, they do not concatenate.
function offlineConfig ({ host, port }) {
  return {
    Addresses: {
      API: `/ip4/${host}/tcp/${port}`,
      Swarm: [],
      Announce: [],
      NoAnnounce: [],
      Gateway: '',
      RPC: '',
      Delegates: []
    },
    Bootstrap: [],
    Swarm: { DisableNatPortMap: true },
    Discovery: {
      MDNS: { Enabled: false },
      webRTCStar: { Enabled: false }
    },
    Routing: { Type: 'none' }
  }
}

async function main () {
  const options = readOptions()
  mkdirSync(options.repo, { recursive: true })

  const ipfs = await create({
    repo: options.repo,
    // An empty repo skips js-ipfs' bundled help files, and Ed25519 keys are generated instantly.
    init: { emptyRepo: true, algorithm: 'Ed25519' },
    config: offlineConfig(options),
    preload: { enabled: false },
    offline: true,
    start: false,
    silent: true,
    repoAutoMigrate: false
  })
  const api = new HttpApi(ipfs)
  await api.start()

  let stopping = false
  const stop = async (signal) => {
    if (stopping) return
    stopping = true
    console.log(`dso-ipfs stopping on ${signal}`)
    setTimeout(() => {
      console.error('dso-ipfs: stop timed out')
      process.exit(1)
    }, STOP_TIMEOUT_MS).unref()
    try {
      await api.stop()
      await ipfs.stop()
    } catch (err) {
      console.error(`dso-ipfs: error while stopping: ${err.stack ?? err}`)
      process.exit(1)
    }
    console.log('dso-ipfs stopped')
    process.exit(0)
  }
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
    process.on(signal, () => { stop(signal) })
  }

  const { id } = await ipfs.id()
  const { version } = await ipfs.version()
  const ready = { api: `http://${options.host}:${options.port}`, id: id.toString(), version, repo: options.repo }
  console.log(`dso-ipfs ready ${JSON.stringify(ready)}`)
}

main().catch((err) => {
  const hint = err.code === 'ERR_LOCK_EXISTS'
    ? ' (another node uses this repo, or a killed one left repo.lock behind)'
    : ''
  console.error(`dso-ipfs: failed to start${hint}: ${err.stack ?? err}`)
  process.exit(1)
})
