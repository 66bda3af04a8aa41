/** The parts of an Ajv error the messages use (fastify passes Ajv 8 errors). */
export interface SchemaIssue {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

/**
 * One sentence per schema issue that names the field as the caller wrote it (`body.state`,
 * `params.id`), so a 400 says what to fix without reading the OpenAPI document.
 */
export function describeSchemaIssues(issues: readonly SchemaIssue[], part: string): string {
  return issues.map((issue) => describeIssue(issue, part)).join('; ');
}

function describeIssue(issue: SchemaIssue, part: string): string {
  const path = `${part}${issue.instancePath.replaceAll('/', '.')}`;
  const { params } = issue;
  switch (issue.keyword) {
    case 'required':
      return `${path}.${String(params['missingProperty'])} is required`;
    case 'additionalProperties':
      return `${path}.${String(params['additionalProperty'])} is not a known field`;
    case 'enum':
      return `${path} must be one of ${(params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'type':
      return `${path} must be ${String(params['type'])}`;
    default:
      return `${path} ${issue.message ?? 'is invalid'}`;
  }
}
