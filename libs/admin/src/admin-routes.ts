import type {
  ChannelView,
  MoveOperation,
  NodeView,
  StreamingCoordinator,
} from '@woodstream/streaming-coordinator';
import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { BearerAuth, RouteAccess } from './bearer-auth.js';
import type { RouteContext } from './route-context.js';
import { HttpApiError, toHttpApiError } from './http-errors.js';
import {
  balanceSchema,
  channelParams,
  channelSchema,
  clusterSchema,
  errorResponses,
  nodeIdParams,
  nodeSchema,
  operationParams,
  operationSchema,
} from './schemas.js';

/** What the admin and Milvus route plugins share. */
export interface AdminRouteContext extends RouteContext {
  coordinator: StreamingCoordinator;
  auth: BearerAuth;
}

/** The onRequest hook of a route: runs before the body is read, so 401/403 come before 400. */
export function authHook(context: AdminRouteContext, access: RouteAccess): onRequestHookHandler {
  return (request, _reply, done) => {
    try {
      context.auth.check(access, request.headers.authorization);
      done();
    } catch (err) {
      done(err as Error);
    }
  };
}

/** OpenAPI `security` of a route, so clients see which calls need the token. */
export function security(
  context: AdminRouteContext,
  access: RouteAccess,
): { security?: { bearerAuth: string[] }[] } {
  return context.auth.isRequired(access) ? { security: [{ bearerAuth: [] }] } : {};
}

/** The time limit of one admin call, cut short when the server closes. */
export function callSignal(context: RouteContext): AbortSignal {
  return AbortSignal.any([AbortSignal.timeout(context.requestTimeoutMs), context.closing]);
}

/** Mutations go to the active coordinator only; a standby says who leads (503, retryable). */
export function requireLeader(coordinator: StreamingCoordinator): void {
  if (coordinator.isActive) return;
  const { leaderId } = coordinator.status();
  throw new HttpApiError(
    'NOT_LEADER',
    leaderId === null
      ? 'this coordinator is not the active one and no active coordinator is known; try again shortly'
      : `this coordinator is not the active one; send the request to coordinator ${leaderId}`,
    { leaderId },
  );
}

function findNode(coordinator: StreamingCoordinator, id: number): NodeView | undefined {
  return coordinator.listNodes().find((n) => n.serverId === id);
}

/** The registered node `id`; throws NODE_NOT_FOUND when there is none. */
export function nodeOrThrow(coordinator: StreamingCoordinator, id: number): NodeView {
  const node = findNode(coordinator, id);
  if (node === undefined) {
    throw new HttpApiError('NODE_NOT_FOUND', `no streaming node ${id} is registered`);
  }
  return node;
}

function nodeJson(node: NodeView): Record<string, unknown> {
  return {
    id: node.serverId,
    address: node.address,
    version: node.version,
    state: node.stopping ? 'stopping' : node.frozen ? 'frozen' : 'active',
    healthy: node.healthy,
    channels: node.channels,
    load: node.channels.length,
    vchannelCount: node.vchannelCount,
  };
}

function channelJson(channel: ChannelView): Record<string, unknown> {
  return {
    name: channel.name,
    state: channel.state,
    term: channel.term,
    nodeId: channel.nodeId,
    history: channel.history,
    lastAssignedAtMs: channel.lastAssignedAtMs,
    vchannelCount: channel.vchannelCount,
    task: {
      status: channel.task,
      failedAttempts: channel.failedAttempts,
      lastError: channel.lastError,
    },
  };
}

function operationJson(operation: MoveOperation): Record<string, unknown> {
  return {
    id: operation.id,
    channel: operation.pchannel,
    targetNodeId: operation.targetNodeId,
    state: operation.state,
    term: operation.term,
    reason: operation.reason,
    createdAtMs: operation.createdAtMs,
    updatedAtMs: operation.updatedAtMs,
    finishedAtMs: operation.finishedAtMs,
  };
}

/** Runs a coordinator call and maps its errors through the one table in http-errors.ts. */
async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toHttpApiError(err);
  }
}

type IdParams = { Params: { id: number } };

/** /api/v1/*: the admin REST API of the coordinator. */
export function registerAdminRoutes(app: FastifyInstance, context: AdminRouteContext): void {
  const { coordinator } = context;
  const read = { onRequest: authHook(context, 'read') };
  const write = { onRequest: authHook(context, 'write') };
  const tags = ['admin'];

  app.get(
    '/api/v1/cluster',
    {
      ...read,
      schema: {
        summary: 'Coordinator, node and channel counts, assignment version, balance settings',
        tags,
        ...security(context, 'read'),
        response: { 200: clusterSchema, ...errorResponses },
      },
    },
    () => {
      const status = coordinator.status();
      const nodes = coordinator.listNodes();
      return {
        coordinator: { id: status.coordinatorId, role: status.role, leaderId: status.leaderId },
        assignmentVersion: status.version,
        nodes: {
          total: nodes.length,
          healthy: nodes.filter((n) => n.healthy).length,
          frozen: nodes.filter((n) => n.frozen).length,
          stopping: nodes.filter((n) => n.stopping).length,
        },
        channels: { total: status.pchannelCount, byState: status.channelsByState },
        balance: status.settings,
      };
    },
  );

  app.get(
    '/api/v1/nodes',
    {
      ...read,
      schema: {
        summary: 'Streaming nodes with a session, by id',
        tags,
        ...security(context, 'read'),
        response: {
          200: {
            type: 'object',
            required: ['nodes'],
            properties: { nodes: { type: 'array', items: nodeSchema } },
          },
          ...errorResponses,
        },
      },
    },
    () => ({ nodes: coordinator.listNodes().map(nodeJson) }),
  );

  app.get<IdParams>(
    '/api/v1/nodes/:id',
    {
      ...read,
      schema: {
        summary: 'One streaming node',
        tags,
        ...security(context, 'read'),
        params: nodeIdParams,
        response: { 200: nodeSchema, ...errorResponses },
      },
    },
    (request) => nodeJson(nodeOrThrow(coordinator, request.params.id)),
  );

  app.put<IdParams & { Body: { state: 'active' | 'frozen' } }>(
    '/api/v1/nodes/:id/state',
    {
      ...write,
      schema: {
        summary: 'Freeze a node (its channels are drained, it gets none) or make it active again',
        description:
          'Persisted: a freeze survives coordinator restarts. The node must be registered.',
        tags,
        ...security(context, 'write'),
        params: nodeIdParams,
        body: {
          type: 'object',
          required: ['state'],
          additionalProperties: false,
          properties: { state: { type: 'string', enum: ['active', 'frozen'] } },
        },
        response: { 200: nodeSchema, ...errorResponses },
      },
    },
    async (request) => {
      requireLeader(coordinator);
      const { id } = request.params;
      nodeOrThrow(coordinator, id);
      const options = { signal: callSignal(context) };
      await call(() =>
        request.body.state === 'frozen'
          ? coordinator.freezeNode(id, options)
          : coordinator.unfreezeNode(id, options),
      );
      return nodeJson(nodeOrThrow(coordinator, id));
    },
  );

  app.get(
    '/api/v1/channels',
    {
      ...read,
      schema: {
        summary: 'Every pchannel in cluster order',
        tags,
        ...security(context, 'read'),
        response: {
          200: {
            type: 'object',
            required: ['channels'],
            properties: { channels: { type: 'array', items: channelSchema } },
          },
          ...errorResponses,
        },
      },
    },
    () => ({ channels: coordinator.listChannels().map(channelJson) }),
  );

  app.get<{ Params: { name: string } }>(
    '/api/v1/channels/:name',
    {
      ...read,
      schema: {
        summary: 'One pchannel',
        tags,
        ...security(context, 'read'),
        params: channelParams,
        response: { 200: channelSchema, ...errorResponses },
      },
    },
    (request) => {
      const channel = coordinator.listChannels().find((c) => c.name === request.params.name);
      if (channel === undefined) {
        throw new HttpApiError(
          'CHANNEL_NOT_FOUND',
          `no pchannel ${JSON.stringify(request.params.name)}`,
        );
      }
      return channelJson(channel);
    },
  );

  app.post<{ Params: { name: string }; Body: { targetNodeId: number } }>(
    '/api/v1/channels/:name/move',
    {
      ...write,
      schema: {
        summary: 'Move a pchannel to a node now (ignores the cooldown and allowRebalance)',
        description:
          'Answers 202 with an operation; follow it at /api/v1/operations/{operationId}. ' +
          'The balancer may move the channel again later unless rebalancing is suspended.',
        tags,
        ...security(context, 'write'),
        params: channelParams,
        body: {
          type: 'object',
          required: ['targetNodeId'],
          additionalProperties: false,
          properties: {
            targetNodeId: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
          },
        },
        response: {
          202: {
            type: 'object',
            required: ['operationId', 'operation'],
            properties: { operationId: { type: 'string' }, operation: operationSchema },
          },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      requireLeader(coordinator);
      const { name } = request.params;
      const { targetNodeId } = request.body;
      if (!coordinator.listChannels().some((c) => c.name === name)) {
        throw new HttpApiError('CHANNEL_NOT_FOUND', `no pchannel ${JSON.stringify(name)}`);
      }
      nodeOrThrow(coordinator, targetNodeId);
      const { operationId } = await call(() =>
        coordinator.startMove(name, targetNodeId, { signal: callSignal(context) }),
      );
      const operation = coordinator.getOperation(operationId);
      // Invariant: an operation just returned is the newest one, so it cannot be forgotten yet.
      if (operation === undefined) throw new Error(`operation ${operationId} vanished`);
      return reply
        .code(202)
        .header('location', `/api/v1/operations/${operationId}`)
        .send({ operationId, operation: operationJson(operation) });
    },
  );

  app.get<{ Params: { id: string } }>(
    '/api/v1/operations/:id',
    {
      ...read,
      schema: {
        summary: 'A channel move: pending, removing, assigning, done or failed',
        description:
          'Operations live in the memory of the coordinator that started them; the last 1024 ' +
          '(maxOperations) are kept.',
        tags,
        ...security(context, 'read'),
        params: operationParams,
        response: { 200: operationSchema, ...errorResponses },
      },
    },
    (request) => {
      const operation = coordinator.getOperation(request.params.id);
      if (operation === undefined) {
        throw new HttpApiError(
          'OPERATION_NOT_FOUND',
          `no operation ${JSON.stringify(request.params.id)} on this coordinator (unknown, forgotten, or started by another coordinator)`,
        );
      }
      return operationJson(operation);
    },
  );

  app.get(
    '/api/v1/balance',
    {
      ...read,
      schema: {
        summary: 'Balance settings',
        tags,
        ...security(context, 'read'),
        response: { 200: balanceSchema, ...errorResponses },
      },
    },
    () => coordinator.currentSettings(),
  );

  app.put<{ Body: { allowRebalance: boolean } }>(
    '/api/v1/balance',
    {
      ...write,
      schema: {
        summary: 'Suspend (false) or resume (true) rebalancing of healthy channels; persisted',
        tags,
        ...security(context, 'write'),
        body: {
          type: 'object',
          required: ['allowRebalance'],
          additionalProperties: false,
          properties: { allowRebalance: { type: 'boolean' } },
        },
        response: { 200: balanceSchema, ...errorResponses },
      },
    },
    async (request) => {
      requireLeader(coordinator);
      await call(() =>
        coordinator.setAllowRebalance(request.body.allowRebalance, {
          signal: callSignal(context),
        }),
      );
      return coordinator.currentSettings();
    },
  );

  app.post(
    '/api/v1/balance/trigger',
    {
      ...write,
      schema: {
        summary: 'Run a balance round now',
        tags,
        ...security(context, 'write'),
        response: {
          202: {
            type: 'object',
            required: ['triggered'],
            properties: { triggered: { type: 'boolean' } },
          },
          ...errorResponses,
        },
      },
    },
    (_request: FastifyRequest, reply) => {
      requireLeader(coordinator);
      coordinator.triggerBalance();
      return reply.code(202).send({ triggered: true });
    },
  );
}
