// Public entry of @woodstream/admin: the HTTP surface of every process (health, readiness,
// Prometheus metrics) and the coordinator's admin REST API with its Milvus-compatible aliases.
export { buildHttpApp, METRICS_CONTENT_TYPE, startHttpServer } from './http-app.js';
export type {
  AdminOptions,
  HttpAppOptions,
  HttpServer,
  MetricsSource,
  ReadinessCheck,
} from './http-app.js';
export { HTTP_ERROR_CODES } from './http-errors.js';
export type { HttpErrorBody, HttpErrorCode } from './http-errors.js';
export type { HttpLogger } from './route-context.js';
