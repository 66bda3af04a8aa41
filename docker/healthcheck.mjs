// Container health check: exits 0 when the process answers GET /healthz. It tries
// WOODSTREAM_HEALTHCHECK_URL when set, else the default HTTP ports of the coordinator and
// standalone (9091) and of a streaming node (9092) on loopback.
/* global fetch, AbortSignal */
const urls = process.env.WOODSTREAM_HEALTHCHECK_URL
  ? [process.env.WOODSTREAM_HEALTHCHECK_URL]
  : ['http://127.0.0.1:9091/healthz', 'http://127.0.0.1:9092/healthz'];

for (const url of urls) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    if (res.ok) process.exit(0);
  } catch {
    // not this port; try the next
  }
}
console.error(`unhealthy: no answer from ${urls.join(', ')}`);
process.exit(1);
