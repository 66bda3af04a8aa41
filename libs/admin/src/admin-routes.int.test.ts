import { waitFor } from '@woodstream/testing';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLogger } from '../test/capture-logger.js';
import { startTestCluster, WAIT, type TestCluster } from './testing/index.js';
import { buildHttpApp, startHttpServer } from './http-app.js';

let cluster: TestCluster;
let app: FastifyInstance;

beforeAll(async () => {
  cluster = await startTestCluster();
  app = buildHttpApp({
    logger: captureLogger(),
    readiness: [],
    admin: { coordinator: cluster.coordinator },
  });
  // Keeps the balancer from undoing the moves the tests make; tests that change it restore it.
  await cluster.coordinator.setAllowRebalance(false);
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
});

async function inject(
  method: 'GET' | 'PUT' | 'POST' | 'DELETE',
  url: string,
  payload?: unknown,
  target: FastifyInstance = app,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await target.inject({
    method,
    url,
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
  });
  return { status: response.statusCode, body: response.json() };
}

function nodeIds(): number[] {
  return cluster.nodes.map((n) => n.serverId);
}

describe('admin REST API on a real coordinator and streaming nodes', () => {
  it('summarises the cluster', async () => {
    const { status, body } = await inject('GET', '/api/v1/cluster');
    expect(status).toBe(200);
    expect(body).toMatchObject({
      coordinator: { role: 'ACTIVE', id: cluster.coordinator.options.coordinatorId },
      nodes: { total: 2, healthy: 2, frozen: 0, stopping: 0 },
      channels: {
        total: 4,
        byState: { UNINITIALIZED: 0, ASSIGNING: 0, ASSIGNED: 4, UNAVAILABLE: 0 },
      },
      balance: { allowRebalance: false, frozenNodeIds: [] },
    });
    expect((body['assignmentVersion'] as { global: number }).global).toBeGreaterThanOrEqual(1);
  });

  it('lists nodes with their state and load and shows one node', async () => {
    const { status, body } = await inject('GET', '/api/v1/nodes');
    expect(status).toBe(200);
    const nodes = body['nodes'] as { id: number; load: number; channels: string[] }[];
    expect(nodes.map((n) => n.id)).toEqual([...nodeIds()].sort((a, b) => a - b));
    expect(nodes.reduce((sum, n) => sum + n.load, 0)).toBe(4);
    const [first] = nodes;
    const one = await inject('GET', `/api/v1/nodes/${first?.id}`);
    expect(one.status).toBe(200);
    expect(one.body).toEqual({
      ...first,
      address: cluster.nodes.find((n) => n.serverId === first?.id)?.address,
      state: 'active',
      healthy: true,
    });
  });

  it('answers 404 for an unknown node and 400 naming the field for a malformed id', async () => {
    const missing = await inject('GET', '/api/v1/nodes/987654');
    expect(missing).toEqual({
      status: 404,
      body: {
        code: 'NODE_NOT_FOUND',
        message: 'no streaming node 987654 is registered',
        retryable: false,
      },
    });
    const malformed = await inject('GET', '/api/v1/nodes/abc');
    expect(malformed.status).toBe(400);
    expect(malformed.body).toEqual({
      code: 'INVALID_REQUEST',
      message: 'params.id must be integer',
      retryable: false,
    });
  });

  it('lists channels and shows one, 404 for an unknown channel', async () => {
    const { status, body } = await inject('GET', '/api/v1/channels');
    expect(status).toBe(200);
    const channels = body['channels'] as { name: string }[];
    expect(channels.map((c) => c.name)).toEqual(['wal-0000', 'wal-0001', 'wal-0002', 'wal-0003']);
    const one = await inject('GET', '/api/v1/channels/wal-0002');
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({
      name: 'wal-0002',
      state: 'ASSIGNED',
      term: expect.any(Number) as unknown,
      task: { status: 'IDLE', failedAttempts: 0, lastError: null },
    });
    expect(nodeIds()).toContain(one.body['nodeId']);
    const missing = await inject('GET', '/api/v1/channels/nope');
    expect(missing.status).toBe(404);
    expect(missing.body['code']).toBe('CHANNEL_NOT_FOUND');
  });

  it('shows how many vchannels each channel and each node carries', async () => {
    const channel = cluster.coordinator.listChannels().find((c) => c.name === 'wal-0003')!;
    const node = cluster.nodes.find((n) => n.serverId === channel.nodeId)!;
    // Produced on the node itself: the first message of each vchannel registers it.
    const wal = node.manager.get('wal-0003', channel.term);
    await Promise.all(
      ['orders', 'users', 'orders', 'events'].map((v) => wal.append(v, new Uint8Array(1), {})),
    );
    const shown = await waitFor(async () => {
      const { body } = await inject('GET', '/api/v1/channels/wal-0003');
      return body['vchannelCount'] === 3 && body;
    }, WAIT);
    expect(shown).toMatchObject({
      name: 'wal-0003',
      state: 'ASSIGNED',
      term: channel.term,
      nodeId: channel.nodeId,
      history: [],
    });
    const { body } = await inject('GET', '/api/v1/channels');
    expect(
      (body['channels'] as { name: string; vchannelCount: number }[]).map((c) => [
        c.name,
        c.vchannelCount,
      ]),
    ).toEqual([
      ['wal-0000', 0],
      ['wal-0001', 0],
      ['wal-0002', 0],
      ['wal-0003', 3],
    ]);
    const nodes = (await inject('GET', '/api/v1/nodes')).body['nodes'] as {
      id: number;
      vchannelCount: number;
    }[];
    expect(nodes.map((n) => n.vchannelCount)).toEqual(
      nodes.map((n) => (n.id === channel.nodeId ? 3 : 0)),
    );
  });

  it('moves a channel: 202 with an operation that reaches done at the new term', async () => {
    const before = cluster.coordinator.listChannels().find((c) => c.name === 'wal-0001')!;
    const target = nodeIds().find((id) => id !== before.nodeId)!;
    const started = await inject('POST', '/api/v1/channels/wal-0001/move', {
      targetNodeId: target,
    });
    expect(started.status).toBe(202);
    const operationId = started.body['operationId'] as string;
    expect(started.body['operation']).toMatchObject({
      id: operationId,
      channel: 'wal-0001',
      targetNodeId: target,
    });
    const done = await waitFor(async () => {
      const { body } = await inject('GET', `/api/v1/operations/${operationId}`);
      return body['state'] === 'done' && body;
    }, WAIT);
    expect(done).toMatchObject({ term: before.term + 1, reason: null, channel: 'wal-0001' });
    expect(done['finishedAtMs']).toBeGreaterThanOrEqual(done['createdAtMs'] as number);
    const after = await inject('GET', '/api/v1/channels/wal-0001');
    expect(after.body).toMatchObject({ state: 'ASSIGNED', nodeId: target, term: before.term + 1 });
    // The node itself serves the channel at the new term.
    const node = cluster.nodes.find((n) => n.serverId === target)!;
    expect(
      node.manager
        .openChannels()
        .find((wal) => wal.name === 'wal-0001' && wal.term === done['term']),
    ).toBeDefined();
  });

  it('rejects bad moves: schema (400), unknown channel, node or operation (404)', async () => {
    const [someNode] = nodeIds();
    const noBody = await inject('POST', '/api/v1/channels/wal-0001/move', {});
    expect(noBody.status).toBe(400);
    expect(noBody.body['message']).toBe('body.targetNodeId is required');
    const extra = await inject('POST', '/api/v1/channels/wal-0001/move', {
      targetNodeId: someNode,
      force: true,
    });
    expect(extra.status).toBe(400);
    expect(extra.body['message']).toBe('body.force is not a known field');
    const negative = await inject('POST', '/api/v1/channels/wal-0001/move', { targetNodeId: -1 });
    expect(negative.body['message']).toBe('body.targetNodeId must be >= 0');
    const unknownChannel = await inject('POST', '/api/v1/channels/nope/move', {
      targetNodeId: someNode,
    });
    expect(unknownChannel.status).toBe(404);
    expect(unknownChannel.body['code']).toBe('CHANNEL_NOT_FOUND');
    const unknownNode = await inject('POST', '/api/v1/channels/wal-0001/move', {
      targetNodeId: 987654,
    });
    expect(unknownNode.status).toBe(404);
    expect(unknownNode.body['code']).toBe('NODE_NOT_FOUND');
    const unknownOperation = await inject('GET', '/api/v1/operations/not-an-operation');
    expect(unknownOperation.status).toBe(404);
    expect(unknownOperation.body['code']).toBe('OPERATION_NOT_FOUND');
  });

  it('freezes a node (its channels drain to the other) and makes it active again', async () => {
    const [frozen, other] = nodeIds() as [number, number];
    const put = await inject('PUT', `/api/v1/nodes/${frozen}/state`, { state: 'frozen' });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ id: frozen, state: 'frozen', healthy: false });
    await waitFor(
      () =>
        cluster.coordinator
          .listChannels()
          .every((c) => c.state === 'ASSIGNED' && c.nodeId === other),
      { ...WAIT, description: 'channels drained from the frozen node' },
    );
    const shown = await inject('GET', `/api/v1/nodes/${frozen}`);
    expect(shown.body).toMatchObject({ state: 'frozen', channels: [], load: 0 });
    // A move onto a frozen node is refused by the coordinator: 409, not retryable.
    const refused = await inject('POST', '/api/v1/channels/wal-0000/move', {
      targetNodeId: frozen,
    });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'REJECTED', retryable: false });

    const active = await inject('PUT', `/api/v1/nodes/${frozen}/state`, { state: 'active' });
    expect(active.status).toBe(200);
    expect(active.body).toMatchObject({ state: 'active', healthy: true });
    expect(cluster.coordinator.currentSettings().frozenNodeIds).toEqual([]);
  });

  it('validates node state changes and answers 404 for a node without a session', async () => {
    const [id] = nodeIds();
    const bad = await inject('PUT', `/api/v1/nodes/${id}/state`, { state: 'paused' });
    expect(bad.status).toBe(400);
    expect(bad.body['message']).toBe('body.state must be one of "active", "frozen"');
    const missing = await inject('PUT', '/api/v1/nodes/987654/state', { state: 'frozen' });
    expect(missing.status).toBe(404);
    expect(missing.body['code']).toBe('NODE_NOT_FOUND');
    expect(cluster.coordinator.currentSettings().frozenNodeIds).toEqual([]);
  });

  it('reads, changes and triggers balancing', async () => {
    expect(await inject('GET', '/api/v1/balance')).toEqual({
      status: 200,
      body: { allowRebalance: false, frozenNodeIds: [] },
    });
    const resumed = await inject('PUT', '/api/v1/balance', { allowRebalance: true });
    expect(resumed).toEqual({ status: 200, body: { allowRebalance: true, frozenNodeIds: [] } });
    const bad = await inject('PUT', '/api/v1/balance', { allowRebalance: 'maybe' });
    expect(bad.status).toBe(400);
    expect(bad.body['message']).toBe('body.allowRebalance must be boolean');
    expect(await inject('POST', '/api/v1/balance/trigger')).toEqual({
      status: 202,
      body: { triggered: true },
    });
    // With rebalancing on, the balancer evens the load out again (2 + 2).
    await waitFor(() => cluster.coordinator.listNodes().every((n) => n.channels.length === 2), {
      ...WAIT,
      description: 'balanced',
    });
    await inject('PUT', '/api/v1/balance', { allowRebalance: false });
    expect(cluster.coordinator.currentSettings().allowRebalance).toBe(false);
  });

  it('answers JSON errors for unknown routes and malformed JSON', async () => {
    const route = await inject('GET', '/api/v1/nothing');
    expect(route).toEqual({
      status: 404,
      body: { code: 'NOT_FOUND', message: 'no route GET /api/v1/nothing', retryable: false },
    });
    const response = await app.inject({
      method: 'PUT',
      url: '/api/v1/balance',
      headers: { 'content-type': 'application/json' },
      payload: '{"allowRebalance": tru',
    });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST', retryable: false });
  });

  it('serves an OpenAPI document built from the route schemas', async () => {
    const { status, body } = await inject('GET', '/docs/json');
    expect(status).toBe(200);
    expect(body['openapi']).toMatch(/^3\./);
    const paths = body['paths'] as Record<string, Record<string, unknown>>;
    expect(Object.keys(paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/cluster',
        '/api/v1/nodes/{id}/state',
        '/api/v1/channels/{name}/move',
        '/api/v1/operations/{id}',
        '/management/streaming/nodes/status',
        '/healthz',
        '/metrics',
      ]),
    );
    expect(paths['/api/v1/channels/{name}/move']?.['post']).toMatchObject({
      requestBody: { required: true },
      responses: { '202': expect.anything() as unknown },
    });
  });
});

describe('Milvus-compatible management routes', () => {
  it('reads and sets the balance status with Milvus shapes', async () => {
    expect(await inject('GET', '/management/streaming/balance/status')).toEqual({
      status: 200,
      body: { msg: 'OK', status: 'suspended' },
    });
    expect(
      await inject('PUT', '/management/streaming/balance/status', { status: 'resumed' }),
    ).toEqual({ status: 200, body: { msg: 'OK' } });
    expect(await inject('GET', '/management/streaming/balance/status')).toEqual({
      status: 200,
      body: { msg: 'OK', status: 'activate' },
    });
    await inject('PUT', '/management/streaming/balance/status', { status: 'suspended' });
    expect(cluster.coordinator.currentSettings().allowRebalance).toBe(false);
    const bad = await inject('PUT', '/management/streaming/balance/status', { status: 'off' });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({
      msg: 'body.status must be one of "suspended", "resumed", "active"',
    });
    const method = await inject('POST', '/management/streaming/balance/status', {});
    expect(method).toEqual({ status: 405, body: { msg: 'method POST not allowed' } });
  });

  it('lists nodes, suspends and resumes one, and shows its distribution', async () => {
    const [id] = nodeIds() as [number];
    const list = await inject('GET', '/management/streaming/nodes');
    expect(list.status).toBe(200);
    expect(list.body['msg']).toBe('OK');
    expect(list.body['nodeInfos']).toContainEqual({
      ID: id,
      address: cluster.nodes[0]?.address,
      state: 'active',
    });
    expect(
      await inject('PUT', '/management/streaming/nodes/status', {
        node_id: id,
        status: 'suspended',
      }),
    ).toEqual({ status: 200, body: { msg: 'OK' } });
    expect(await inject('GET', `/management/streaming/nodes/status?node_id=${id}`)).toEqual({
      status: 200,
      body: { node_id: id, status: 'suspended' },
    });
    await waitFor(
      async () => {
        const { body } = await inject(
          'GET',
          `/management/streaming/nodes/distribution?node_id=${id}`,
        );
        return (body['channel_names'] as string[]).length === 0;
      },
      { ...WAIT, description: 'suspended node drained' },
    );
    await inject('PUT', '/management/streaming/nodes/status', { node_id: id, status: 'active' });
    expect(await inject('GET', `/management/streaming/nodes/status?node_id=${id}`)).toEqual({
      status: 200,
      body: { node_id: id, status: 'active' },
    });
    const other = nodeIds()[1] as number;
    const distribution = await inject(
      'GET',
      `/management/streaming/nodes/distribution?node_id=${other}`,
    );
    expect(distribution).toEqual({
      status: 200,
      body: {
        channel_names: cluster.coordinator.listNodes().find((n) => n.serverId === other)?.channels,
        sealed_segmentIDs: [],
      },
    });
  });

  it('answers Milvus-style errors: 400 for a missing or unknown node_id', async () => {
    expect(await inject('GET', '/management/streaming/nodes/status')).toEqual({
      status: 400,
      body: { msg: 'querystring.node_id is required' },
    });
    expect(await inject('GET', '/management/streaming/nodes/status?node_id=987654')).toEqual({
      status: 400,
      body: { msg: 'no streaming node 987654 is registered' },
    });
    expect(
      await inject('PUT', '/management/streaming/nodes/status', {
        node_id: 987654,
        status: 'suspended',
      }),
    ).toEqual({ status: 400, body: { msg: 'no streaming node 987654 is registered' } });
    expect((await inject('DELETE', '/management/streaming/nodes')).status).toBe(405);
  });
});

describe('admin auth', () => {
  const token = 'an-admin-token-1234';
  let protectedApp: FastifyInstance;
  let readsProtectedApp: FastifyInstance;
  const logger = captureLogger();

  beforeAll(() => {
    protectedApp = buildHttpApp({
      logger,
      readiness: [],
      admin: { coordinator: cluster.coordinator, token },
    });
    readsProtectedApp = buildHttpApp({
      logger,
      readiness: [],
      admin: { coordinator: cluster.coordinator, token, protectReads: true },
    });
  });
  afterAll(async () => {
    await protectedApp?.close();
    await readsProtectedApp?.close();
  });

  async function put(target: FastifyInstance, authorization?: string): Promise<number> {
    const response = await target.inject({
      method: 'PUT',
      url: '/api/v1/balance',
      payload: { allowRebalance: false },
      ...(authorization === undefined ? {} : { headers: { authorization } }),
    });
    return response.statusCode;
  }

  it('needs the token on mutations: 401 without, 403 with another, 200 with it', async () => {
    const missing = await protectedApp.inject({ method: 'PUT', url: '/api/v1/balance' });
    expect(missing.statusCode).toBe(401);
    expect(missing.json()).toMatchObject({ code: 'UNAUTHORIZED', retryable: false });
    expect(await put(protectedApp, 'Bearer wrong-token')).toBe(403);
    expect(await put(protectedApp, `Bearer ${token}`)).toBe(200);
    const milvus = await protectedApp.inject({
      method: 'PUT',
      url: '/management/streaming/nodes/status',
      payload: { node_id: 1, status: 'active' },
      headers: { authorization: 'Bearer nope' },
    });
    expect(milvus.statusCode).toBe(403);
    expect(milvus.json()).toEqual({ msg: 'the admin token is wrong' });
  });

  it('keeps reads open unless protectReads, and probes always open', async () => {
    for (const url of ['/api/v1/cluster', '/management/streaming/nodes']) {
      expect((await protectedApp.inject({ method: 'GET', url })).statusCode).toBe(200);
      expect((await readsProtectedApp.inject({ method: 'GET', url })).statusCode).toBe(401);
      const authorized = await readsProtectedApp.inject({
        method: 'GET',
        url,
        headers: { authorization: `Bearer ${token}` },
      });
      expect(authorized.statusCode).toBe(200);
    }
    for (const url of ['/healthz', '/readyz', '/metrics']) {
      expect((await readsProtectedApp.inject({ method: 'GET', url })).statusCode).toBe(200);
    }
  });

  it('marks protected routes in the OpenAPI document and never logs the token', async () => {
    const doc = (await protectedApp.inject({ method: 'GET', url: '/docs/json' })).json<{
      paths: Record<string, Record<string, { security?: unknown }>>;
    }>();
    expect(doc.paths['/api/v1/balance']?.['put']?.security).toEqual([{ bearerAuth: [] }]);
    expect(doc.paths['/api/v1/balance']?.['get']?.security).toBeUndefined();
    expect(JSON.stringify(logger.records)).not.toContain(token);
  });
});

describe('admin API on a standby coordinator', () => {
  it('serves reads from the local view and answers mutations with 503 NOT_LEADER', async () => {
    const standby = await cluster.startStandby();
    const standbyApp = buildHttpApp({
      logger: captureLogger(),
      readiness: [],
      admin: { coordinator: standby },
    });
    try {
      expect(standby.isActive).toBe(false);
      const leaderId = cluster.coordinator.options.coordinatorId;
      const cluster_ = await inject('GET', '/api/v1/cluster', undefined, standbyApp);
      expect(cluster_.status).toBe(200);
      expect(cluster_.body['coordinator']).toEqual({
        id: standby.options.coordinatorId,
        role: 'STANDBY',
        leaderId,
      });
      const mutations: [method: 'PUT' | 'POST', url: string, body?: unknown][] = [
        ['PUT', '/api/v1/balance', { allowRebalance: true }],
        ['POST', '/api/v1/balance/trigger'],
        ['PUT', `/api/v1/nodes/${nodeIds()[0]}/state`, { state: 'frozen' }],
        ['POST', '/api/v1/channels/wal-0000/move', { targetNodeId: nodeIds()[0] }],
      ];
      for (const [method, url, body] of mutations) {
        const response = await inject(method, url, body, standbyApp);
        expect(response.status).toBe(503);
        expect(response.body).toEqual({
          code: 'NOT_LEADER',
          message: `this coordinator is not the active one; send the request to coordinator ${leaderId}`,
          retryable: true,
          leaderId,
        });
      }
      const milvus = await inject(
        'PUT',
        '/management/streaming/balance/status',
        { status: 'resumed' },
        standbyApp,
      );
      expect(milvus.status).toBe(500);
      expect(milvus.body['msg']).toContain('not the active one');
      expect(cluster.coordinator.currentSettings()).toEqual({
        allowRebalance: false,
        frozenNodeIds: [],
      });
    } finally {
      await standbyApp.close();
      await standby.stop();
    }
  });
});

describe('startHttpServer', () => {
  it('listens on a free port, serves the probes over HTTP and stops', async () => {
    const server = await startHttpServer({
      logger: captureLogger(),
      readiness: [{ name: 'coordinator', check: () => Promise.resolve() }],
      admin: { coordinator: cluster.coordinator },
      host: '127.0.0.1',
      port: 0,
    });
    try {
      expect(server.address).toBe(`127.0.0.1:${server.port}`);
      const health = await fetch(`http://${server.address}/healthz`, {
        signal: AbortSignal.timeout(5_000),
      });
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
      const metrics = await fetch(`http://${server.address}/metrics`, {
        signal: AbortSignal.timeout(5_000),
      });
      expect(metrics.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const cluster_ = await fetch(`http://${server.address}/api/v1/cluster`, {
        signal: AbortSignal.timeout(5_000),
      });
      expect(cluster_.status).toBe(200);
    } finally {
      await server.stop();
    }
    await expect(
      fetch(`http://${server.address}/healthz`, { signal: AbortSignal.timeout(5_000) }),
    ).rejects.toThrow();
  });

  it('stops when its signal aborts', async () => {
    const controller = new AbortController();
    const server = await startHttpServer({
      logger: captureLogger(),
      readiness: [],
      host: '127.0.0.1',
      port: 0,
      signal: controller.signal,
    });
    controller.abort();
    await server.stop();
    await expect(
      fetch(`http://${server.address}/healthz`, { signal: AbortSignal.timeout(5_000) }),
    ).rejects.toThrow();
  });
});
