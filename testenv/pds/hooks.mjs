// Module loader hook for start.mjs. It makes the PDS's access-token
// lifetime (120 minutes in @atproto/pds 0.5) read
// globalThis.pdsAccessTokenTtl at signing time, so start.mjs can shorten
// it once the dev network is up and a test can reach the refreshSession
// path without waiting two hours.

const TARGET = '/@atproto/pds/dist/account-manager/helpers/auth.js'
const DEFAULT = "expiresIn = '120mins'"

export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context)
  if (!url.endsWith(TARGET)) return result
  const source = String(result.source)
  if (!source.includes(DEFAULT)) {
    throw new Error(`${url} has no ${DEFAULT}; update testenv/pds/hooks.mjs for this @atproto/pds version`)
  }
  return {
    ...result,
    source: source.replace(DEFAULT, "expiresIn = globalThis.pdsAccessTokenTtl ?? '120mins'"),
  }
}
