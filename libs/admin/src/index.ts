// Public entry of @woodstream/admin: the HTTP surface of every process (health, readiness,
// Prometheus metrics) and the coordinator's admin REST API with its Milvus-compatible aliases.
export { buildHttpApp, startHttpServer } from './http-app.js';
export type {
  AdminOptions,
  HttpAppOptions,
  HttpServer,
  MetricsSource,
  ReadinessCheck,
} from './http-app.js';
export type { HttpLogger } from './route-context.js';
