// JSON schemas of the admin routes: they validate requests, shape responses (fields not listed
// here are never sent) and are the source of the OpenAPI document at /docs/json.
import { MAX_CHANNEL_NAME_LENGTH } from '@woodstream/streaming';
import { HTTP_ERROR_CODES } from './http-errors.js';

export const errorSchema = {
  type: 'object',
  required: ['code', 'message', 'retryable'],
  properties: {
    code: { type: 'string', enum: Object.keys(HTTP_ERROR_CODES) },
    message: { type: 'string' },
    retryable: { type: 'boolean' },
    leaderId: {
      type: ['string', 'null'],
      description: 'NOT_LEADER only: the active coordinator, when known',
    },
  },
} as const;

/** Every admin route answers errors in this shape. */
export const errorResponses = { '4xx': errorSchema, '5xx': errorSchema } as const;

export const nodeIdParams = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: { id: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } },
} as const;

export const channelParams = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: { name: { type: 'string', minLength: 1, maxLength: MAX_CHANNEL_NAME_LENGTH } },
} as const;

export const operationParams = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: { id: { type: 'string', minLength: 1, maxLength: 64 } },
} as const;

const nodeId = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;

export const nodeSchema = {
  type: 'object',
  required: ['id', 'address', 'version', 'state', 'healthy', 'channels', 'load', 'vchannelCount'],
  properties: {
    id: nodeId,
    address: { type: 'string', description: 'host:port of its gRPC services' },
    version: { type: 'string' },
    state: {
      type: 'string',
      enum: ['active', 'frozen', 'stopping'],
      description: 'stopping wins over frozen: the node is leaving',
    },
    healthy: { type: 'boolean', description: 'may receive channels (active)' },
    channels: { type: 'array', items: { type: 'string' }, description: 'ASSIGNED to the node' },
    load: { type: 'integer', description: 'number of channels' },
    vchannelCount: {
      type: 'integer',
      minimum: 0,
      description: 'vchannels registered on the channels ASSIGNED to the node',
    },
  },
} as const;

const pchannelState = {
  type: 'string',
  enum: ['UNINITIALIZED', 'ASSIGNING', 'ASSIGNED', 'UNAVAILABLE'],
} as const;

export const channelSchema = {
  type: 'object',
  required: [
    'name',
    'state',
    'term',
    'nodeId',
    'history',
    'lastAssignedAtMs',
    'vchannelCount',
    'task',
  ],
  properties: {
    name: { type: 'string' },
    state: pchannelState,
    term: { type: 'integer' },
    nodeId: { type: ['integer', 'null'] },
    history: {
      type: 'array',
      description: 'earlier owners still to be told to remove the channel',
      items: {
        type: 'object',
        required: ['term', 'nodeId'],
        properties: { term: { type: 'integer' }, nodeId: { type: 'integer' } },
      },
    },
    lastAssignedAtMs: { type: ['integer', 'null'] },
    vchannelCount: {
      type: 'integer',
      minimum: 0,
      description:
        'vchannels ever produced to on the channel (registered before their first message; never decreases)',
    },
    task: {
      type: 'object',
      required: ['status', 'failedAttempts', 'lastError'],
      properties: {
        status: { type: 'string', enum: ['IDLE', 'RUNNING', 'BACKOFF'] },
        failedAttempts: { type: 'integer' },
        lastError: { type: ['string', 'null'] },
      },
    },
  },
} as const;

export const operationSchema = {
  type: 'object',
  required: [
    'id',
    'channel',
    'targetNodeId',
    'state',
    'term',
    'reason',
    'createdAtMs',
    'updatedAtMs',
    'finishedAtMs',
  ],
  properties: {
    id: { type: 'string' },
    channel: { type: 'string' },
    targetNodeId: { type: 'integer' },
    state: { type: 'string', enum: ['pending', 'removing', 'assigning', 'done', 'failed'] },
    term: {
      type: ['integer', 'null'],
      description: 'the term the move assigns; null while pending',
    },
    reason: { type: ['string', 'null'], description: 'why it failed' },
    createdAtMs: { type: 'integer' },
    updatedAtMs: { type: 'integer' },
    finishedAtMs: { type: ['integer', 'null'] },
  },
} as const;

export const balanceSchema = {
  type: 'object',
  required: ['allowRebalance', 'frozenNodeIds'],
  properties: {
    allowRebalance: {
      type: 'boolean',
      description: 'false: healthy channels stay put; lost ones are still re-placed',
    },
    frozenNodeIds: { type: 'array', items: { type: 'integer' } },
  },
} as const;

const countByState = {
  type: 'object',
  required: ['UNINITIALIZED', 'ASSIGNING', 'ASSIGNED', 'UNAVAILABLE'],
  properties: {
    UNINITIALIZED: { type: 'integer' },
    ASSIGNING: { type: 'integer' },
    ASSIGNED: { type: 'integer' },
    UNAVAILABLE: { type: 'integer' },
  },
} as const;

export const clusterSchema = {
  type: 'object',
  required: ['coordinator', 'assignmentVersion', 'nodes', 'channels', 'balance'],
  properties: {
    coordinator: {
      type: 'object',
      required: ['id', 'role', 'leaderId'],
      properties: {
        id: { type: 'string' },
        role: { type: 'string', enum: ['ACTIVE', 'STANDBY', 'STOPPED'] },
        leaderId: { type: ['string', 'null'], description: 'the active coordinator, when known' },
      },
    },
    assignmentVersion: {
      type: 'object',
      required: ['global', 'local'],
      properties: { global: { type: 'integer' }, local: { type: 'integer' } },
    },
    nodes: {
      type: 'object',
      required: ['total', 'healthy', 'frozen', 'stopping'],
      properties: {
        total: { type: 'integer' },
        healthy: { type: 'integer' },
        frozen: { type: 'integer' },
        stopping: { type: 'integer' },
      },
    },
    channels: {
      type: 'object',
      required: ['total', 'byState'],
      properties: { total: { type: 'integer' }, byState: countByState },
    },
    balance: balanceSchema,
  },
} as const;

// Milvus-compatible shapes (/management/streaming/*): snake_case and "msg" as Milvus has them.

export const milvusErrorSchema = {
  type: 'object',
  required: ['msg'],
  properties: { msg: { type: 'string' } },
} as const;

export const milvusErrorResponses = { '4xx': milvusErrorSchema, '5xx': milvusErrorSchema } as const;

export const milvusOkSchema = milvusErrorSchema;

export const milvusNodeIdQuery = {
  type: 'object',
  required: ['node_id'],
  additionalProperties: false,
  properties: { node_id: nodeId },
} as const;
