// Validates Istio objects (networking.istio.io/v1, security.istio.io/v1) with the validators
// that the npm package @kubernetes-models/istio generates from Istio's CRDs.
// Reads a JSON array of objects on stdin; writes a JSON array with, for each object in the
// same order, the list of problems found ("<path>: <what>"), empty when valid.
import * as networking from "@kubernetes-models/istio/networking.istio.io/v1";
import * as security from "@kubernetes-models/istio/security.istio.io/v1";

const GROUPS = { "networking.istio.io/v1": networking, "security.istio.io/v1": security };

function describe(error) {
  const path = error.instancePath || "/";
  const params = error.params || {};
  if (error.keyword === "required") return `${path}: required property ${params.missingProperty} is missing`;
  if (error.keyword === "enum") return `${path}: must be one of ${JSON.stringify(params.allowedValues)}`;
  if (error.keyword === "type") return `${path}: must be of type ${params.type}`;
  if (error.keyword === "pattern") return `${path}: must match ${params.pattern}`;
  if (error.keyword === "additionalProperties") return `${path}: unknown property ${params.additionalProperty}`;
  if (error.message) return `${path}: ${error.message}`;
  return `${path}: fails ${error.keyword} ${JSON.stringify(params)}`;
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((body) => {
  const group = GROUPS[body.apiVersion];
  const model = group ? group[body.kind] : undefined;
  if (typeof model !== "function") return [`/kind: ${body.apiVersion} ${body.kind} is not an Istio kind this validator knows`];
  try {
    new model(body).validate();
    return [];
  } catch (err) {
    if (Array.isArray(err.errors)) return err.errors.map(describe);
    return [String(err && err.message ? err.message : err)];
  }
});
process.stdout.write(JSON.stringify(results));
