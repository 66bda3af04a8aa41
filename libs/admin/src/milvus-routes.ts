import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  authHook,
  callSignal,
  nodeOrThrow,
  requireLeader,
  security,
  type AdminRouteContext,
} from './admin-routes.js';
import { HttpApiError, toHttpApiError } from './http-errors.js';
import { milvusErrorResponses, milvusNodeIdQuery, milvusOkSchema } from './schemas.js';

const OK = { msg: 'OK' };

/**
 * Milvus answers errors as `{"msg": "..."}` with 400 (the request is wrong), 405 (wrong method)
 * or 500 (anything else); tools written for Milvus only know these. Auth failures keep 401/403.
 */
function milvusStatus(error: HttpApiError): number {
  switch (error.code) {
    case 'INVALID_REQUEST':
    case 'NOT_FOUND':
    case 'NODE_NOT_FOUND':
    case 'CHANNEL_NOT_FOUND':
    case 'OPERATION_NOT_FOUND':
    case 'REJECTED':
      return 400;
    case 'UNAUTHORIZED':
    case 'FORBIDDEN':
      return error.status;
    case 'CONFLICT':
    case 'NOT_LEADER':
    case 'UNAVAILABLE':
    case 'BUSY':
    case 'TIMEOUT':
    case 'INTERNAL':
      return 500;
  }
}

/** Response schemas of a route: a JSON object with every one of `properties`, or a Milvus error. */
function milvusResponse(properties: Record<string, object>) {
  return {
    200: { type: 'object', required: Object.keys(properties), properties },
    ...milvusErrorResponses,
  };
}

/**
 * /management/streaming/*: the management endpoints of Milvus with its request and response
 * shapes, so Milvus tooling can suspend balance and freeze nodes here too.
 */
export function registerMilvusRoutes(app: FastifyInstance, context: AdminRouteContext): void {
  const { coordinator } = context;
  const read = { onRequest: authHook(context, 'read') };
  const write = { onRequest: authHook(context, 'write') };
  const tags = ['milvus-compatible'];

  // Encapsulated in this plugin: the /api/v1 routes keep {code, message, retryable}.
  app.setErrorHandler((error, _request, reply) => {
    const apiError =
      error instanceof HttpApiError
        ? error
        : typeof (error as { statusCode?: unknown }).statusCode === 'number' &&
            ((error as { statusCode: number }).statusCode ?? 0) < 500
          ? new HttpApiError('INVALID_REQUEST', (error as Error).message)
          : toHttpApiError(error);
    if (apiError.code === 'INTERNAL') {
      context.logger.error('http request failed', { error: apiError.message });
    }
    void reply.code(milvusStatus(apiError)).send({ msg: apiError.message });
  });

  const methodNotAllowed = (request: FastifyRequest, reply: FastifyReply): FastifyReply =>
    reply.code(405).send({ msg: `method ${request.method} not allowed` });
  const otherMethods = (path: string, allowed: readonly string[]): void => {
    app.route({
      method: ['GET', 'PUT', 'POST', 'DELETE', 'PATCH'].filter((m) => !allowed.includes(m)),
      url: path,
      schema: { hide: true, response: { 405: milvusOkSchema } },
      handler: methodNotAllowed,
    });
  };

  app.get(
    '/management/streaming/balance/status',
    {
      ...read,
      schema: {
        summary: 'Whether WAL rebalancing is on ("activate", sic) or "suspended"',
        tags,
        ...security(context, 'read'),
        response: milvusResponse({
          msg: { type: 'string' },
          status: { type: 'string', enum: ['activate', 'suspended'] },
        }),
      },
    },
    () => ({
      ...OK,
      status: coordinator.currentSettings().allowRebalance ? 'activate' : 'suspended',
    }),
  );

  app.put<{ Body: { status: 'suspended' | 'resumed' | 'active' } }>(
    '/management/streaming/balance/status',
    {
      ...write,
      schema: {
        summary: 'Suspend or resume WAL rebalancing (persisted)',
        tags,
        ...security(context, 'write'),
        body: {
          type: 'object',
          required: ['status'],
          additionalProperties: false,
          properties: { status: { type: 'string', enum: ['suspended', 'resumed', 'active'] } },
        },
        response: { 200: milvusOkSchema, ...milvusErrorResponses },
      },
    },
    async (request) => {
      requireLeader(coordinator);
      await coordinator.setAllowRebalance(request.body.status !== 'suspended', {
        signal: callSignal(context),
      });
      return OK;
    },
  );
  otherMethods('/management/streaming/balance/status', ['GET', 'PUT']);

  app.get(
    '/management/streaming/nodes',
    {
      ...read,
      schema: {
        summary: 'Streaming nodes; a frozen node is "suspended"',
        tags,
        ...security(context, 'read'),
        response: milvusResponse({
          msg: { type: 'string' },
          nodeInfos: {
            type: 'array',
            items: {
              type: 'object',
              required: ['ID', 'address', 'state'],
              properties: {
                ID: { type: 'integer' },
                address: { type: 'string' },
                state: { type: 'string', enum: ['active', 'suspended'] },
              },
            },
          },
        }),
      },
    },
    () => ({
      ...OK,
      nodeInfos: coordinator.listNodes().map((n) => ({
        ID: n.serverId,
        address: n.address,
        state: n.frozen ? 'suspended' : 'active',
      })),
    }),
  );
  otherMethods('/management/streaming/nodes', ['GET']);

  app.get<{ Querystring: { node_id: number } }>(
    '/management/streaming/nodes/status',
    {
      ...read,
      schema: {
        summary: 'Whether a node is "active" or "suspended" (frozen)',
        tags,
        ...security(context, 'read'),
        querystring: milvusNodeIdQuery,
        response: milvusResponse({
          node_id: { type: 'integer' },
          status: { type: 'string', enum: ['active', 'suspended'] },
        }),
      },
    },
    (request) => {
      const id = request.query.node_id;
      nodeOrThrow(coordinator, id);
      const frozen = coordinator.currentSettings().frozenNodeIds.includes(id);
      return { node_id: id, status: frozen ? 'suspended' : 'active' };
    },
  );

  app.put<{ Body: { node_id: number; status: 'suspended' | 'active' } }>(
    '/management/streaming/nodes/status',
    {
      ...write,
      schema: {
        summary: 'Freeze ("suspended": its channels are drained) or unfreeze ("active") a node',
        tags,
        ...security(context, 'write'),
        body: {
          type: 'object',
          required: ['node_id', 'status'],
          additionalProperties: false,
          properties: {
            node_id: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
            status: { type: 'string', enum: ['suspended', 'active'] },
          },
        },
        response: { 200: milvusOkSchema, ...milvusErrorResponses },
      },
    },
    async (request) => {
      requireLeader(coordinator);
      const { node_id: id, status } = request.body;
      nodeOrThrow(coordinator, id);
      const options = { signal: callSignal(context) };
      await (status === 'suspended'
        ? coordinator.freezeNode(id, options)
        : coordinator.unfreezeNode(id, options));
      return OK;
    },
  );
  otherMethods('/management/streaming/nodes/status', ['GET', 'PUT']);

  app.get<{ Querystring: { node_id: number } }>(
    '/management/streaming/nodes/distribution',
    {
      ...read,
      schema: {
        summary: 'The pchannels ASSIGNED to a node',
        tags,
        ...security(context, 'read'),
        querystring: milvusNodeIdQuery,
        response: milvusResponse({
          channel_names: { type: 'array', items: { type: 'string' } },
          sealed_segmentIDs: {
            type: 'array',
            items: { type: 'integer' },
            description: 'always empty: Woodstream has no query segments',
          },
        }),
      },
    },
    (request) => {
      const node = nodeOrThrow(coordinator, request.query.node_id);
      return { channel_names: node.channels, sealed_segmentIDs: [] };
    },
  );
  otherMethods('/management/streaming/nodes/distribution', ['GET']);
}
