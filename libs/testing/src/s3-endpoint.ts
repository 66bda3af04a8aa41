/** Connection facts for an S3-compatible server started by the harness. Serializable. */
export interface S3Endpoint {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Whether the server honours `If-None-Match: *` and `If-Match` on PUT. */
  conditionalWrites: boolean;
}
